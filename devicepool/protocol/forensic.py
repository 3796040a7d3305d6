"""The forensic validation protocol: calibrated LRs and open-set identification, measured
on devices the embedding network never saw and on speakers nothing was fitted on.

The design (``docs/forensic.md`` states it for examiners). Each of ``n_splits`` folds
splits the corpus twice, both splits drawn from ``random_state`` alone (every speaking
mode and every scorer gets the same folds):

* **devices**: the corpus's devices, shuffled, in ``n_splits`` parts; the fold's part
  is its *unseen* devices (12 devices, 3 folds: 4 unseen, 8 seen). Every device is
  unseen in exactly one fold.
* **speakers**: the speakers, shuffled again for each fold, in a *calibration* half
  (the larger one for an odd count) and a *test* half.

What each fold fits and measures (all in the protocol's speaking ``mode``):

========================================  ========  ===========
step                                      devices   speakers
========================================  ========  ===========
embedding network (classifier) fit        seen      calibration
scorer background (``X_background``)      seen      calibration
``DeviceLR`` calibration pairs            unseen    calibration
LR test pairs (``pair_llrs``)             unseen    test
open-set threshold (unknowns, ``far``)    unseen    calibration
open-set test: known accuracy             seen      test
open-set test: unknown rejection          unseen    test
========================================  ========  ===========

So the network never hears the devices the LRs compare, and no test speaker is in any
fit, threshold or calibration. A pair's references are always by other speakers than
its questioned recording. The calibration devices are the test devices, recorded by
other speakers: the relevant population of the LRs is the fold's unseen devices. The
network is fitted with ``groups=speakers`` (its internal validation holds out whole
calibration speakers). Open-set answers are the network's own classes (the seen
devices) or ``UNKNOWN``; a known recording answered ``UNKNOWN`` or with the wrong device
counts as wrong.

With a corpus holding the other speaking mode too, each fold also measures the mode
mismatch (``cross_mode``): questioned recordings in the other mode against references
in the protocol's mode, and the open-set answers on the other mode's test recordings,
with the LR system and threshold fitted in ``mode`` as they are.

The expensive part, one network fit per fold, is :func:`fit_forensic`
(:class:`ForensicFits`); :meth:`ForensicFits.evaluate` then fits scorers, calibrators
and thresholds on the stored embeddings and class log probabilities, so systems are
compared without refitting the network. :func:`run_forensic_protocol` does both and,
with ``out_dir``, writes the files (:mod:`.forensic_eval`).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._io import to_jsonable
from .cache import FeatureCache
from .conditions import MODES, check_corpus, check_seed, rng_for, seed_for
from .engine import Fit, FitData, fit_one, run_fits
from .forensic_eval import ForensicResult, evaluate_fits, write_forensic_outputs
from .keys import corpus_fingerprint
from .lock import output_lock
from .registry import get_model

__all__ = [
    "ForensicFits", "ForensicResult", "ForensicSplit", "FoldOutputs", "fit_forensic", "forensic_splits",
    "run_forensic_protocol",
]


@dataclass(frozen=True)
class ForensicSplit:
    """One fold's composition: which devices the network saw, which speakers do what."""

    fold: int
    unseen_devices: tuple
    seen_devices: tuple
    calibration_speakers: tuple
    test_speakers: tuple
    seed: int  #: the network's ``random_state``
    lr_seed: int  #: ``DeviceLR``'s ``random_state`` (the choice of pairs)

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _lr_seed(random_state, fold):
    return int(rng_for(random_state, "forensic-pairs", fold).integers(2**31 - 1))


def forensic_splits(devices, speakers, n_splits=3, random_state=0, model="da_cnn", mode="neutral"):
    """The folds of the forensic protocol (see the module): device-disjoint parts and,
    per fold, disjoint calibration and test speakers.

    Parameters
    ----------
    devices, speakers : array-like of shape (n_utterances,)
    n_splits : int, default=3
        Device folds; every fold must leave at least 2 unseen and 2 seen devices.
    random_state : int, default=0
    model, mode : str
        Only enter the network's seed (as :func:`~devicepool.protocol.run_protocol`'s).

    Returns
    -------
    list of ForensicSplit

    Examples
    --------
    >>> s = forensic_splits(list("aabbccdd"), list("wxyzwxyz"), n_splits=2)
    >>> [len(f.unseen_devices) for f in s], set(s[0].unseen_devices) & set(s[1].unseen_devices)
    ([2, 2], set())
    >>> set(s[0].calibration_speakers) & set(s[0].test_speakers)
    set()
    """
    devs = np.array(sorted({str(d) for d in devices}), dtype=object)
    spks = np.array(sorted({str(s) for s in speakers}), dtype=object)
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if len(devs) < 2 * n_splits:
        raise ValueError(f"{n_splits} device folds need at least {2 * n_splits} devices (2 unseen "
                         f"per fold, for different-device pairs); the corpus has {len(devs)}")
    if len(spks) < 4:
        raise ValueError("the forensic protocol needs at least 4 speakers (2 for calibration, 2 "
                         f"for test: references are by other speakers); the corpus has {len(spks)}")
    parts = np.array_split(rng_for(random_state, "forensic-devices").permutation(devs), n_splits)
    n_cal = (len(spks) + 1) // 2
    splits = []
    for k, unseen in enumerate(parts):
        order = rng_for(random_state, "forensic-speakers", k).permutation(spks)
        splits.append(ForensicSplit(
            k, tuple(sorted(unseen)), tuple(sorted(set(devs) - set(unseen))),
            tuple(sorted(order[:n_cal])), tuple(sorted(order[n_cal:])),
            seed_for(random_state, model, mode, k), _lr_seed(random_state, k)))
    return splits


@dataclass(eq=False)
class FoldOutputs:
    """What a fold's fitted network gave: embeddings and class log probabilities of the
    utterances ``index`` (corpus positions; every test-relevant utterance, all modes)."""

    index: np.ndarray
    embeddings: np.ndarray
    log_proba: np.ndarray
    classes: np.ndarray
    n_train: int
    fit_seconds: float
    embed_seconds: float
    train_plan: dict = field(default_factory=dict)
    threads: int | None = None  #: torch intra-op threads during the fit


def _network_outputs(est, X):
    """Embeddings and class log probabilities (float64): from one ``predict_outputs``
    pass where the estimator has it (the log softmax of float64 logits), else from
    ``transform`` and ``predict_log_proba`` (or ``predict_proba``)."""
    from scipy.special import log_softmax

    if callable(getattr(est, "predict_outputs", None)):
        out = est.predict_outputs(X)
        return (np.asarray(out.embedding, dtype=np.float64),
                log_softmax(np.asarray(out.logits, dtype=np.float64), axis=1))
    emb = np.asarray(est.transform(X), dtype=np.float64)
    if callable(getattr(est, "predict_log_proba", None)):
        return emb, np.asarray(est.predict_log_proba(X), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return emb, np.log(np.asarray(est.predict_proba(X), dtype=np.float64))


def _fold_outputs(fit, data):
    """Fit the fold's network (the engine's :func:`~.engine.fit_one`); embed the
    utterances ``fit.predict_index``."""
    import torch

    threads = torch.get_num_threads()
    fitted = fit_one(fit, data)
    t1 = time.perf_counter()
    emb, log_proba = _network_outputs(fitted.est, data.features[fit.predict_index])
    plan = dict(getattr(fitted.est, "train_plan_", {}) or {})
    return FoldOutputs(fit.predict_index, emb, log_proba, np.asarray(fitted.est.classes_).astype(str),
                       len(fit.train_index), fitted.seconds, time.perf_counter() - t1, to_jsonable(plan),
                       threads)


@dataclass(eq=False)
class ForensicFits:
    """The fitted folds of one (corpus, model, mode): what :meth:`evaluate` reads.

    Attributes
    ----------
    devices, speakers, modes : ndarray of shape (n_utterances,)
        The corpus's labels (str).
    mode : str
        The speaking mode the networks were trained in.
    splits : list of ForensicSplit
    outputs : list of FoldOutputs
    settings : dict
        Corpus, model, seeds, threads, wall times.
    """

    devices: np.ndarray
    speakers: np.ndarray
    modes: np.ndarray
    mode: str
    splits: list
    outputs: list
    settings: dict

    def evaluate(self, scoring="plda", calibration="logistic", far=0.05, lda_dim=None,
                 n_references=3, open_set_score="max_proba"):
        """Fit and measure one LR system and open-set threshold on every fold.

        Parameters
        ----------
        scoring : {"plda", "cosine"}, calibration : {"logistic", "isotonic"}
            :class:`~devicepool.forensic.DeviceLR`'s scorer and calibrator.
        far : float, default=0.05
            Target false acceptance rate of the open-set threshold.
        lda_dim : int, "auto" or None, default=None
            The scorer's LDA dimensions (``"auto"``: the fold's seen devices minus one).
        n_references : int, default=3
            References per pair.
        open_set_score : {"max_proba", "margin"}, default="max_proba"

        Returns
        -------
        ForensicResult
        """
        system = {"scoring": scoring, "calibration": calibration, "far": float(far),
                  "lda_dim": lda_dim, "n_references": int(n_references),
                  "open_set_score": open_set_score}
        return evaluate_fits(self, system)


def _embed_index(corpus, mode):
    """Utterances the folds embed: every mode the corpus has (the other one for the
    mismatch measures)."""
    return np.flatnonzero(np.isin(corpus.mode, [m for m in MODES if m in set(corpus.mode)]))


def _plan(corpus, splits, spec, params, mode, progress):
    """One :class:`~.engine.Fit` per fold: the seen devices' calibration speakers, in ``mode``."""
    embed_idx = _embed_index(corpus, mode)
    fits = []
    for s in splits:
        train = np.flatnonzero((corpus.mode == mode) & np.isin(corpus.target, s.seen_devices)
                               & np.isin(corpus.groups, s.calibration_speakers))
        fits.append(Fit(spec, dict(params), s.seed, train, embed_idx, key=s.fold, progress=progress))
    return fits


def _check_args(corpus, mode, model_params, random_state):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if mode not in set(corpus.mode):
        raise ValueError(f"the corpus has no {mode} speech (its modes: {sorted(set(corpus.mode))})")
    if model_params is not None and not isinstance(model_params, dict):
        raise TypeError(f"model_params must be a dict of the model's parameters, got "
                        f"{type(model_params).__name__}")
    check_seed(random_state)


def fit_forensic(corpus, model="da_cnn", n_splits=3, mode="neutral", model_params=None,
                 random_state=0, progress=True, n_jobs=None, cache_dir=None):
    """Fit the embedding network of every fold (the expensive part of the protocol).

    Parameters are those of :func:`run_forensic_protocol`; ``cache_dir`` keeps the
    features on disk (``None``: in memory).

    Returns
    -------
    ForensicFits
    """
    import torch

    c = check_corpus(corpus)
    _check_args(c, mode, model_params, random_state)
    spec, params = get_model(model), dict(model_params or {})
    probe = spec.make_classifier(c.sample_rate, random_state=0, **params)
    missing = [m for m in ("transform", "predict_proba") if not hasattr(probe, m)]
    if missing:
        raise ValueError(f"model {model!r} has no {' or '.join(missing)}: the forensic protocol "
                         "compares embeddings ('transform') and needs posteriors; use a network "
                         "(da_cnn, sa_cnn, dft_cnn)")
    splits = forensic_splits(c.target, c.groups, n_splits, int(random_state), model, mode)
    t0 = time.perf_counter()
    fingerprint = corpus_fingerprint(c)
    cache = FeatureCache(cache_dir, progress, n_jobs)
    features = cache.features(c.data, c.sample_rate, fingerprint, [spec.feature])[spec.feature]
    t1 = time.perf_counter()
    data = {spec.feature: FitData(features, c.target, c.mode, c.groups, sample_rate=c.sample_rate)}
    fits = _plan(c, splits, spec, params, mode, progress)
    done = {fit.key: out for fit, out in run_fits(fits, _fold_outputs, data, n_jobs, progress,
                                                  "forensic fits")}
    outputs = [done[s.fold] for s in splits]  # fold order, however they finished
    settings = {
        "corpus": {"fingerprint": fingerprint, "n_utterances": len(c.data),
                   "n_devices": len(set(c.target)), "n_speakers": len(set(c.groups)),
                   "modes": sorted(set(c.mode)), "sample_rate": c.sample_rate,
                   "devices": sorted(set(c.target)), "speakers": sorted(set(c.groups))},
        "model": model, "model_params": params, "mode": mode, "n_splits": int(n_splits),
        "random_state": int(random_state), "n_jobs": n_jobs,
        "torch_threads": torch.get_num_threads(),
        "feature_seconds": t1 - t0, "fit_wall_seconds": time.perf_counter() - t1,
    }
    return ForensicFits(c.target, c.groups, c.mode, mode, splits, outputs, to_jsonable(settings))


def _pretrained_beside(corpus, splits, random_state):
    """The shipped pretrained system on the protocol's folds (nothing trained on the corpus)."""
    from ..estimators.embedding import DeviceEmbedding
    from ..forensic import DeviceLR
    from .pretrained_eval import evaluate_pretrained

    E = DeviceEmbedding.pretrained(sample_rate=int(corpus.sample_rate)).transform(corpus.data)
    return evaluate_pretrained(corpus, E, DeviceLR.pretrained(embedder=None), splits,
                               random_state=random_state)


def run_forensic_protocol(corpus, model="da_cnn", n_splits=3, mode="neutral", scoring="plda",
                          calibration="logistic", far=0.05, model_params=None, random_state=0,
                          out_dir=None, progress=True, n_jobs=None, lda_dim=None, n_references=3,
                          open_set_score="max_proba", wait=False, pretrained=False):
    """Validate the forensic system: LRs on unseen devices and speakers, and open set.

    Parameters
    ----------
    corpus : Bunch
        ``data``, ``target`` (device), ``groups`` (speaker), ``mode``, ``sample_rate``
        (as from :mod:`devicepool.datasets`); at least ``2 * n_splits`` devices and 4
        speakers.
    model : str, default="da_cnn"
        A registered model (:func:`~devicepool.protocol.get_model`) whose estimator has
        ``transform`` (the embeddings) and ``predict_proba``.
    n_splits : int, default=3
        Device folds (see the module for the design).
    mode : {"neutral", "whisper"}, default="neutral"
        Speaking mode of training, calibration and test.
    scoring, calibration, far, lda_dim, n_references, open_set_score
        The system measured (:meth:`ForensicFits.evaluate`).
    model_params : dict, optional
        The model's parameters, e.g. ``{"max_steps": 200}``.
    random_state : int, default=0
        Base seed of the splits, the networks and the pairs (all recorded).
    out_dir : str or path-like, optional
        Folder of ``forensic.json``, ``forensic.md``, ``llr.npz``, ``tippett.png``,
        ``det.png``, ``ece.png`` (written atomically, under the folder's lock) and the
        feature cache (``cache/``).
    progress : bool, default=True
    n_jobs : int, optional
        Folds fitted in parallel processes (joblib); None: one after the other here.
    wait : bool, default=False
        Wait for another run holding ``out_dir`` instead of raising
        :class:`~devicepool.protocol.OutputLockedError`.
    pretrained : bool, default=False
        Also measure the shipped pretrained embedding and calibration on the same folds,
        with nothing trained on the corpus (:func:`evaluate_pretrained`; open set by
        enrolment): ``result.pretrained``.

    Returns
    -------
    ForensicResult
    """
    locked = contextlib.nullcontext()
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        locked = output_lock(out_dir, wait=wait, notify=bool(progress))
    with locked:
        fits = fit_forensic(corpus, model, n_splits, mode, model_params, random_state, progress,
                            n_jobs, None if out_dir is None else os.path.join(out_dir, "cache"))
        result = fits.evaluate(scoring, calibration, far, lda_dim, n_references, open_set_score)
        if pretrained:
            result.pretrained = _pretrained_beside(corpus, fits.splits, random_state)
        if out_dir is not None:
            write_forensic_outputs(result, out_dir)
    return result

