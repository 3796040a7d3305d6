"""Validation of a pretrained embedding on a corpus it never saw: :func:`evaluate_pretrained`.

Nothing is trained on the evaluated corpus (except the ``closed_set_full`` line, a linear
back end fitted on the corpus's own training folds). The folds are those of
:func:`~devicepool.protocol.forensic_splits`, given by the caller (device-disjoint parts; per fold, the
calibration speakers enrol, the test speakers are questioned), so the figures sit beside
the per-corpus system's of :func:`~devicepool.protocol.run_forensic_protocol`:

``neutral``
    calibrated log10 LRs of same- and different-device pairs among the fold's devices
    (questioned and references neutral, references by other test speakers): Cllr,
    Cllr_min, EER, the rate of same-device pairs with LR < 1 and of different-device
    pairs with LR > 1;
``whisper_vs_neutral``
    whispered questioned recordings against neutral references (when the corpus has
    whisper);
``open_set``
    identification by enrolment: the fold's *other* devices are the known ones, each
    enrolled with ``n_enrol`` neutral recordings of calibration speakers; the fold's
    devices are unknown. A test recording is answered with the known device of highest
    LR, or "unknown" under a threshold: known-device accuracy at 5 % false acceptance of
    unknown devices (threshold read off the unknown recordings), and at the fixed
    threshold LR = 1 (what a user gets without tuning: its false acceptance is given);
``closed_set_enrol``
    every device enrolled with ``n_enrol`` recordings; nearest enrolment (highest LR)
    accuracy on the test speakers' recordings;
``closed_set_full``
    speaker ``GroupKFold(n_splits)``: a logistic regression on the embeddings of the
    training speakers, accuracy on the held-out speakers (the few-shot model with the
    corpus's full training folds).
"""

from __future__ import annotations

import numpy as np

from .forensic_eval import cross_pairs

__all__ = ["evaluate_pretrained", "lr_measures", "summarise"]


def lr_measures(llr, y, raw=None):
    """Cllr and the rates of misleading evidence of the (bounded) LRs; EER and Cllr_min of
    the unbounded ones (``raw``), which ties at a bound would distort."""
    from ..forensic import cllr, cllr_min, eer

    raw = llr if raw is None else raw
    return {"cllr": float(cllr(llr, y)), "cllr_min": float(cllr_min(raw, y)), "eer": float(eer(raw, y)),
            "same_lr_below_1": float(np.mean(llr[y == 1] < 0)),
            "diff_lr_above_1": float(np.mean(llr[y == 0] > 0)), "n_pairs": int(len(y))}


def _cross_llrs(lr, E, q_rows, r_rows, dev, spk, n_references, rng):
    qs, refs, y = cross_pairs(dev[q_rows], spk[q_rows], dev[r_rows], spk[r_rows], n_references, rng)
    scores = lr.scorer_.score_pairs(E[q_rows][qs], [E[r_rows][r] for r in refs])
    return lr.calibrate_scores(scores), y, lr.calibrator_.transform(scores)


def _pair_measures(lr, E, rows, dev, spk, seed):
    llr, y = lr.pair_llrs(E[rows], dev[rows], spk[rows], random_state=seed)
    raw, _ = lr.pair_llrs(E[rows], dev[rows], spk[rows], random_state=seed, bounded=False)
    return lr_measures(llr, y, raw)


def _enrol(E, dev, spk, mode, devices, speakers, n_enrol, rng):
    """Enrolment sets: {device: rows}, neutral recordings of ``speakers``."""
    sets = {}
    for d in devices:
        rows = np.flatnonzero((dev == d) & np.isin(spk, speakers) & (mode == "neutral"))
        if len(rows) == 0:
            raise ValueError(f"evaluate_pretrained: device {d!r} has no neutral recording of the "
                             f"enrolment speakers {list(speakers)}")
        sets[d] = rng.choice(rows, min(n_enrol, len(rows)), replace=False)
    return sets


def _llr_matrix(lr, E, q_rows, sets):
    """(len(q_rows), len(sets)) unbounded log10 LRs of each questioned recording against each
    set (decisions rank them; ties at a bound would not rank)."""
    cols = []
    for rows in sets.values():
        cols.append(lr.calibrator_.transform(lr.scorer_.score(E[q_rows], E[rows])))
    return np.stack(cols, axis=1)


def _open_set(lr, E, dev, spk, mode, s, test_speakers, n_enrol, rng, far=0.05):
    sets = _enrol(E, dev, spk, mode, s.seen_devices, s.calibration_speakers, n_enrol, rng)
    names = np.array(list(sets))
    test = np.isin(spk, test_speakers) & (mode == "neutral")
    known = np.flatnonzero(test & np.isin(dev, s.seen_devices))
    unknown = np.flatnonzero(test & np.isin(dev, s.unseen_devices))
    Lk, Lu = _llr_matrix(lr, E, known, sets), _llr_matrix(lr, E, unknown, sets)
    best_k, best_u = Lk.max(1), Lu.max(1)
    correct = names[Lk.argmax(1)] == dev[known]
    t = np.quantile(best_u, 1 - far)
    return {"known_accuracy_at_far": float(np.mean(correct & (best_k > t))), "threshold_llr": float(t),
            "known_accuracy_at_lr1": float(np.mean(correct & (best_k > 0))),
            "far_at_lr1": float(np.mean(best_u > 0)),
            "closed_set_accuracy_known": float(np.mean(correct))}


def _closed_enrol(lr, E, dev, spk, mode, s, test_speakers, n_enrol, rng):
    devices = sorted(set(dev))
    sets = _enrol(E, dev, spk, mode, devices, s.calibration_speakers, n_enrol, rng)
    test = np.flatnonzero(np.isin(spk, test_speakers) & (mode == "neutral"))
    pred = np.array(list(sets))[_llr_matrix(lr, E, test, sets).argmax(1)]
    return float(np.mean(pred == dev[test]))


def _closed_full(E, dev, spk, mode, n_splits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    rows = np.flatnonzero(mode == "neutral")
    accs = []
    for tr, te in GroupKFold(n_splits).split(rows, groups=spk[rows]):
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(E[rows[tr]], dev[rows[tr]])
        accs.append(float(clf.score(E[rows[te]], dev[rows[te]])))
    return accs


def evaluate_pretrained(corpus, embeddings, lr, splits, *, random_state=0, test_speakers=None,
                        n_enrol=3, n_references=3):
    """Figures of a pretrained embedding + calibrated back end on ``corpus`` (see the module).

    Parameters
    ----------
    corpus : Bunch
        With ``target``, ``groups``, ``mode`` (a :func:`make_device_corpus` bunch).
    embeddings : ndarray of shape (n_recordings, d)
        The recordings' embeddings (``DeviceEmbedding().transform(corpus.data)``).
    lr : DeviceLR
        Fitted, taking embeddings (``embedder=None``).
    splits : list of ForensicSplit
        The folds (:func:`~devicepool.protocol.forensic_splits` of the corpus's devices and
        speakers); the speaker 3-fold of ``closed_set_full`` uses ``len(splits)`` folds.
    random_state : int
        Seed of the enrolment draws.
    test_speakers : sequence of str, optional
        Questioned speakers in every fold instead of each fold's test speakers (e.g. the
        speakers the embedding never heard); enrolment always uses the fold's
        calibration speakers minus these.
    n_enrol : int, default=3
    n_references : int, default=3

    Returns
    -------
    result : dict
        ``folds``: one dict of measures per fold; ``summary``: mean and std of each.
    """
    E = np.asarray(embeddings, dtype=np.float64)
    dev = np.asarray(corpus.target).astype(str)
    spk = np.asarray(corpus.groups).astype(str)
    mode = np.asarray(corpus.mode).astype(str)
    folds = []
    for s in splits:
        rng = np.random.default_rng([random_state, 17, s.fold])
        tests = tuple(test_speakers) if test_speakers is not None else s.test_speakers
        if test_speakers is not None:
            cal = tuple(x for x in s.calibration_speakers + s.test_speakers if x not in tests)
            s = type(s)(s.fold, s.unseen_devices, s.seen_devices, cal, tests, s.seed, s.lr_seed)
        in_fold = np.isin(dev, s.unseen_devices) & np.isin(spk, tests)
        rows = np.flatnonzero(in_fold & (mode == "neutral"))
        fold = {"fold": s.fold, "unseen_devices": list(s.unseen_devices), "test_speakers": list(tests),
                "neutral": _pair_measures(lr, E, rows, dev, spk, s.lr_seed)}
        wrows = np.flatnonzero(in_fold & (mode == "whisper"))
        if len(wrows):
            fold["whisper"] = _pair_measures(lr, E, wrows, dev, spk, s.lr_seed)
            llr, y, raw = _cross_llrs(lr, E, wrows, rows, dev, spk, n_references, rng)
            fold["whisper_vs_neutral"] = lr_measures(llr, y, raw)
        if s.calibration_speakers:
            fold["open_set"] = _open_set(lr, E, dev, spk, mode, s, tests, n_enrol, rng)
            fold["closed_set_enrol"] = _closed_enrol(lr, E, dev, spk, mode, s, tests, n_enrol, rng)
        folds.append(fold)
    return {"folds": folds, "closed_set_full": _closed_full(E, dev, spk, mode, len(splits)),
            "summary": summarise(folds)}


def summarise(folds):
    """Mean and std over folds of every numeric measure: {"section.measure": (mean, std)}."""
    values = {}
    for f in folds:
        for section, m in f.items():
            if isinstance(m, dict):
                for k, v in m.items():
                    values.setdefault(f"{section}.{k}", []).append(v)
            elif isinstance(m, float):
                values.setdefault(section, []).append(m)
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in values.items()}
