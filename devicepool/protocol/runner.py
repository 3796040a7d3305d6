"""The Table-3 protocol: plan -> engine -> evaluate -> report.

* plan (:func:`_plan_tasks`): one :class:`~.fitting.FitTask` per (model, training mode,
  fold) with training utterances, its seed (:func:`~.conditions.seed_for`) and its files
  in the store;
* engine (:func:`~.engine.run_fits`): the fits not finished in the store, here or
  through joblib (``n_jobs`` loky processes, or a dask.distributed cluster's workers);
  features are computed once per corpus (:mod:`.cache`) and each fit receives those of
  its kind as one :class:`~.engine.FitData`;
* evaluate (:func:`~.fitting.fit_task`): each fit's predictions as result records and
  Fig. 2 data, written to the store (:class:`~.store.ResultStore`, or
  :class:`~.store.MemoryStore` without an ``out_dir``) as they arrive;
* report (:mod:`.report`): Table 3, the summary, the report files.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._io import to_jsonable
from .._typing import PathLike
from .cache import FeatureCache
from .conditions import CONDITIONS, MODES, check_corpus, check_seed, make_folds, seed_for, select_conditions
from .engine import FitData, in_parallel, run_fits
from .fitting import FitTask, fit_task
from .keys import augmentation_token, corpus_fingerprint, digest, model_recipe, settings_key
from .registry import get_model, registered_models
from .report import ProtocolResult, _summarise, _write_report
from .store import MemoryStore, ResultStore, _merge_attention

__all__ = ["FitTask", "load_results", "run_protocol"]

_log = logging.getLogger("devicepool.protocol.runner")


#: ``mode_augmentation`` value -> the training modes whose recordings get a copy
_AUGMENTED_MODES = {"both": ("neutral", "whisper"), "whisperise": ("neutral",),
                    "vocalise": ("whisper",)}


def _check_mode_augmentation(value):
    """``None`` (off) or one of ``_AUGMENTED_MODES``' keys; ``True`` is ``"both"``."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return "both" if value else None
    if isinstance(value, str) and value in _AUGMENTED_MODES:
        return value
    raise ValueError(f"mode_augmentation must be False, True, 'both', 'whisperise' or "
                     f"'vocalise'; got {value!r}")


def _mode_copies(data, mode, sample_rate, random_state, source_modes=MODES):
    """``(index, copies)``: the recordings of ``source_modes`` (in corpus order) and each
    one's copy in the other speaking mode (training material only): neutral ones
    whisperised, whispered ones vocalised (``mode_augmentation``). With both modes the
    index is every recording, so the copies' cached features keep the layout of the
    releases before the one-direction settings."""
    from devicepool.audio import as_waveform
    from devicepool.datasets import vocalise_recordings, whisperise_recordings

    made = {}
    for source_mode, make_copies in (("neutral", whisperise_recordings),
                                     ("whisper", vocalise_recordings)):
        idx = np.flatnonzero(mode == source_mode)
        if len(idx) and source_mode in source_modes:
            made.update(zip(idx.tolist(), make_copies(
                [as_waveform(data[i], sample_rate, index=int(i)) for i in idx],
                sample_rate, random_state=random_state)))
    index = np.array(sorted(made), dtype=np.intp)
    return index, [made[i] for i in index.tolist()]


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """The checked settings of one :func:`run_protocol` call."""

    corpus: object
    models: list
    conditions: list
    notes: list
    folds: list
    fingerprint: str
    n_splits: int
    random_state: int
    model_params: dict
    out_dir: str | None = None
    progress: bool = True
    n_jobs: int | None = None
    resume: bool = True
    mode_augmentation: str | None = None
    store: ResultStore | MemoryStore | None = None

    @classmethod
    def create(cls, corpus, models, conditions, n_splits, random_state, model_params,
               allow_unknown_speakers=False, **kw):
        corpus = check_corpus(corpus, allow_unknown_speakers)
        models = [models] if isinstance(models, str) else list(models)
        if not models:
            raise ValueError("models is empty: name at least one model")
        for m in models:
            get_model(m)
        model_params = dict(model_params or {})
        bad = [k for k in model_params if k not in models]
        if bad:
            raise ValueError(f"model_params names models not run: {bad}; models are {models}")
        for k, v in model_params.items():
            if not isinstance(v, dict):
                raise TypeError(f"model_params[{k!r}] must be a dict of parameters, got {type(v).__name__}")
        random_state = check_seed(random_state)
        kw["mode_augmentation"] = _check_mode_augmentation(kw.get("mode_augmentation"))
        conds, notes = select_conditions(conditions, corpus.mode)
        folds = make_folds(corpus.groups, n_splits)
        kw["store"] = MemoryStore()
        if kw.get("out_dir") is not None:
            kw["out_dir"] = os.fspath(kw["out_dir"])
            os.makedirs(kw["out_dir"], exist_ok=True)
            kw["store"] = ResultStore(kw["out_dir"])
        return cls(corpus, models, conds, notes, folds, corpus_fingerprint(corpus), n_splits,
                   random_state, model_params, **kw)


def _plan_tasks(run):
    """One task per (model, training mode, fold) that has training utterances."""
    tasks, mode = [], run.corpus.mode
    for m in run.models:
        params = dict(run.model_params.get(m, {}))
        spec = get_model(m)
        recipe = None if spec.template is None else model_recipe(spec.make(**params))
        key = settings_key(run.fingerprint, run.n_splits, run.random_state, m, params,
                          run.mode_augmentation, recipe)
        for train_mode in MODES:
            conds = tuple(c for c in run.conditions if CONDITIONS[c][0] == train_mode)
            for k in range(run.n_splits) if conds else ():
                if not np.any((mode == train_mode) & ~run.folds[k]):
                    run.notes.append(f"{m} fold {k}: no {train_mode} training utterances; skipped")
                    continue
                tasks.append(run.store.locate(FitTask(
                    m, get_model(m), train_mode, k, conds, seed_for(run.random_state, m, train_mode, k),
                    params, run.random_state, key, progress=bool(run.progress))))
    return tasks


def _unfinished(run, tasks):
    """The tasks to fit; refuses a folder holding results of other settings. A damaged
    file warns, naming it, and its fit is redone."""
    if not run.resume:
        return list(tasks)
    todo = []
    for task in tasks:
        status, path = run.store.status(task)
        if status == "other":
            raise ValueError(
                f"{run.out_dir!r} holds results of other settings (corpus audio, labels, seed, "
                f"folds or parameters differ; see {path}); use another output folder or resume=False")
        if status == "todo":
            todo.append(task)
    return todo


def _fit_data(run, todo):
    """``feature kind -> FitData`` for the fits to run, and the corpus's voicing codes."""
    c, cache = run.corpus, FeatureCache(run.store.cache_dir, run.progress, run.n_jobs)
    kinds = sorted({t.spec.feature for t in todo})
    voicing = any(t.spec.attention and t.attention_path for t in todo)
    found = cache.features(c.data, c.sample_rate, run.fingerprint, kinds, voicing=voicing)
    feats = {k: found[k] for k in kinds}
    target, mode, groups, folds, augmented = c.target, c.mode, c.groups, run.folds, None
    index = np.array([], dtype=np.intp)
    if run.mode_augmentation:  # recordings once more, as their copies in the other mode
        index, copies = _mode_copies(c.data, c.mode, c.sample_rate, run.random_state,
                                     _AUGMENTED_MODES[run.mode_augmentation])
    if len(index):  # none when the corpus lacks the source mode ("vocalise" on neutral speech)
        aug_fp = digest(run.fingerprint, *augmentation_token(run.mode_augmentation), run.random_state)
        extra = cache.features(copies, c.sample_rate, aug_fp, kinds)
        feats = {k: np.concatenate([feats[k], extra[k]]) for k in kinds}
        target, mode, groups = (np.concatenate([a, np.asarray(a)[index]])
                                for a in (c.target, c.mode, c.groups))
        folds = [np.concatenate([f, f[index]]) for f in folds]
        augmented = np.arange(len(mode)) >= len(c.mode)
    labels = sorted(set(c.target))
    data = {k: FitData(feats[k], target, mode, groups, folds, labels, augmented, c.sample_rate)
            for k in kinds}
    return data, found.get("voicing")


def _run_fits(run, todo, n_done):
    """Fit ``todo`` (the engine), writing each fit's files the moment it finishes;
    ``key -> outcome``."""
    data, voicing = _fit_data(run, todo)
    outcomes = {}
    for task, (records, attention) in run_fits(todo, fit_task, data, run.n_jobs, run.progress, n_done=n_done,
                                               describe=lambda t: f"{t.model} {t.train_mode} fold {t.fold}"):
        if attention is not None and voicing is not None:
            attention = attention.with_voicing(voicing)
        run.store.write(task, records, attention)
        outcomes[task.key] = (to_jsonable(records), attention)
        _log.info("fitted %s %s fold %d (%.1f s): %s", task.model, task.train_mode, task.fold,
                  records[0]["fit_seconds"] if records else 0.0,
                  ", ".join(f"{r['condition']} {100 * r['accuracy']:.1f} %" for r in records))
    return outcomes


def environment():
    """What a rerun needs to reproduce the numbers: package versions, torch's thread count
    (same seed and same thread count give the same numbers) and the command line."""
    import shlex
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from devicepool import __version__

    # devicepool's own version from the code that ran: an editable install's metadata
    # keeps the version of the day it was installed
    versions = {"devicepool": __version__}
    for dist in ("torch", "skorch", "scikit-learn", "numpy", "scipy"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    import torch

    return {"versions": versions, "torch_threads": torch.get_num_threads(),
            "command": " ".join(shlex.quote(a) for a in sys.argv)}


def _result(run, tasks, outcomes):
    records, parts = [], {}
    for task in tasks:  # plan order: the same Fig. 2 data however the fits were scheduled
        recs, attention = outcomes[task.key]
        records += recs
        if attention is not None:
            parts.setdefault(task.train_mode, []).append(attention)
    c = run.corpus
    config = {
        "corpus_fingerprint": run.fingerprint, "n_utterances": len(c.data), "n_splits": run.n_splits,
        "random_state": run.random_state, "sample_rate": c.sample_rate,
        "folds": [sorted(set(c.groups[f])) for f in run.folds], "model_params": run.model_params,
        "seeds": {f"{t.model}/{t.train_mode}/fold{t.fold}": t.seed for t in tasks},
        "devices": sorted(set(c.target)), "python": platform.python_version(),
        "mode_augmentation": run.mode_augmentation, **environment(),
    }
    attention = {k: _merge_attention(v) for k, v in parts.items()}
    return _summarise(records, run.models, run.conditions, run.notes, attention,
                      to_jsonable(config), run.n_splits)


def run_protocol(
    corpus: Mapping[str, Any],
    models: str | Sequence[str] = ("dft_cnn", "sa_cnn", "da_cnn"),
    conditions: Sequence[str] | None = None,
    n_splits: int = 3,
    out_dir: PathLike | None = None,
    random_state: int = 0,
    model_params: Mapping[str, dict[str, Any]] | None = None,
    progress: bool = True,
    n_jobs: int | None = None,
    resume: bool = True,
    report: bool = True,
    title: str = "devicepool: Table 3 reproduction",
    mode_augmentation: bool | str = False,
    wait: bool = False,
    allow_unknown_speakers: bool = False,
    paper: bool = True,
) -> ProtocolResult:
    """Run the paper's protocol (Table 3, Fig. 2 data) on a corpus.

    Parameters
    ----------
    corpus : Bunch
        From :mod:`devicepool.datasets`: ``data`` (waveforms or paths), ``target``
        (device), ``groups`` (speaker), ``mode`` (``"neutral"``/``"whisper"``; missing
        means all neutral), ``sample_rate``.
    models : sequence of str, default=("dft_cnn", "sa_cnn", "da_cnn")
        Registered model names (see :func:`registered_models`).
    conditions : sequence of str or None
        Among ``"MOBI"``, ``"N"``, ``"W"``, ``"N/W"``, ``"W/N"``. ``None``: all that the
        corpus can serve (:func:`available_conditions`). A requested condition whose
        modes the corpus lacks is skipped with a note in ``result.notes``.
    n_splits : int, default=3
        Speaker-disjoint folds (:func:`make_folds`).
    out_dir : str or path-like, optional
        Folder for results (``results/<model>/<condition>/fold<k>.json``), cached
        features, Fig. 2 data and, with ``report=True``, the report. Rerunning with the
        same ``out_dir`` and settings resumes; results of other settings there (another
        seed, other parameters, or a corpus whose audio or labels changed) raise
        ``ValueError``. A damaged file there (a truncated result, attention or cache file)
        is recomputed and replaced, with a ``UserWarning`` naming it. The run holds an
        exclusive lock on the folder (``out_dir/.lock``) from before its first write to
        its end: see ``wait``.
    random_state : int, default=0
        Base seed; each fit's seed is derived from it, the model, training mode and fold,
        and recorded with the results.
    model_params : dict, optional
        Per-model overrides, e.g. ``{"da_cnn": {"max_epochs": 5}}``.
    progress : bool, default=True
        tqdm bars (stderr) for features and fits, and each fit's epoch bar when the fits
        run one after the other (with ``n_jobs`` the one bar over fits only: bars of
        concurrent fits would interleave). Bars where they can be read: on a terminal
        or in a notebook, not when stderr is a file or a pipe (see
        :mod:`devicepool._progress`). Also makes the waiting message of ``wait`` a
        WARNING.
    n_jobs : int, optional
        Parallel fits through joblib (processes here, or the workers of a dask cluster
        inside ``with joblib.parallel_backend("dask"):``, see ``docs/cluster.md``) and
        parallel feature extraction here. ``None``: sequential.
    resume : bool, default=True
        Reuse finished results found in ``out_dir``. ``False`` recomputes everything.
    report : bool, default=True
        With ``out_dir``, write report.md, Table 3 (Markdown, CSV), per-fold CSV,
        confusion matrices and the Fig. 2 PNGs (needs matplotlib).
    title : str
        Report title.
    paper : bool, default=True
        The report sets the run beside the paper (its values, "MOBI (Ex-1)", its claims);
        False for a corpus of one's own: neutral titles (:func:`write_report`).
    mode_augmentation : bool or {"both", "vocalise", "whisperise"}, default=False
        devicepool's extension beyond the paper: training recordings also train the fit
        as a copy in the other speaking mode, made from the recording itself -- neutral
        recordings whisperised (:func:`devicepool.datasets.whisperise_recordings`: the
        recording's own LPC envelope, device colouration included, driven by noise, 12
        dB softer), whispered ones vocalised
        (:func:`~devicepool.datasets.vocalise_recordings`: the envelope driven by a
        glottal pulse train, 12 dB louder). ``True`` or ``"both"``: every recording;
        ``"vocalise"``: whispered recordings only (the whisper-trained fits, W and W/N;
        the neutral-trained ones are those of no augmentation); ``"whisperise"``: neutral
        ones only. The network sees each device with both kinds of source while the
        training speakers and mode stay those of the condition. Copies are never tested
        on. See ``docs/protocol.md`` for the ablation.
    wait : bool, default=False
        When another run holds ``out_dir`` (its lock), wait for it to end (saying so
        through the ``devicepool.protocol.lock`` logger, a WARNING with ``progress``, which
        Python prints on stderr unless logging is configured otherwise) instead of
        raising :class:`OutputLockedError` (a ``RuntimeError`` naming the folder and the
        holder's pid, host and start time) at once. A lock left by a run that died (even
        by SIGKILL) never blocks: the kernel releases it with the process.
    allow_unknown_speakers : bool, default=False
        A corpus whose speakers are unknown (``corpus.speakers_known`` is False, e.g. a
        folder pattern without ``{speaker}``) is refused: its ``groups`` are utterance
        ids, so the folds would not be speaker-disjoint. True folds by those groups.

    Returns
    -------
    result : ProtocolResult

    Examples
    --------
    >>> from devicepool.datasets import make_device_corpus          # doctest: +SKIP
    >>> corpus = make_device_corpus(n_devices=3, n_speakers=6)      # doctest: +SKIP
    >>> res = run_protocol(corpus, models=["da_cnn"],
    ...                    model_params={"da_cnn": {"max_epochs": 3}})  # doctest: +SKIP
    >>> print(res.to_markdown())                                    # doctest: +SKIP
    """
    run = _Run.create(corpus, models, conditions, n_splits, random_state, model_params,
                      out_dir=out_dir, progress=progress, n_jobs=n_jobs, resume=resume,
                      mode_augmentation=mode_augmentation,
                      allow_unknown_speakers=allow_unknown_speakers)
    with run.store.lock(wait=wait, notify=bool(progress)):  # released at the end, on an error, on Ctrl-C
        run.store.remove_stale_temps()
        return _execute(run, report, title, paper)


def _execute(run, report, title, paper=True):
    """Plan, resume, fit and write: the body of :func:`run_protocol` (lock held)."""
    tasks = _plan_tasks(run)
    todo = _unfinished(run, tasks)
    _log.info("%d fits (%s; %d folds), %d finished in %r, %d to run%s", len(tasks),
              ", ".join(run.models), run.n_splits, len(tasks) - len(todo), run.out_dir, len(todo),
              f" with n_jobs={run.n_jobs}" if in_parallel(run.n_jobs, len(todo)) else "")
    outcomes = {t.key: run.store.read(t) for t in tasks if t not in todo}
    if todo:
        outcomes.update(_run_fits(run, todo, n_done=len(tasks) - len(todo)))
    res = _result(run, tasks, outcomes)
    run.store.write_config(res.config)
    if report and run.out_dir is not None:
        _write_report(res, run.out_dir, title=title, paper=paper)
    return res


def load_results(out_dir, models=None):
    """Read the finished results of a protocol folder back into a :class:`ProtocolResult`.

    Examples
    --------
    >>> import tempfile
    >>> load_results(tempfile.mkdtemp()).records
    []
    """
    records, attention_parts = ResultStore(out_dir).load_all()
    found = []
    for r in records:
        if r["model"] not in found:
            found.append(r["model"])
    if models is None:
        known = registered_models()
        models = [m for m in known if m in found] + [m for m in found if m not in known]
    conds = [c for c in CONDITIONS if any(r["condition"] == c for r in records)]
    attention = {k: _merge_attention(v) for k, v in attention_parts.items()}
    return _summarise([r for r in records if r["model"] in models], list(models), conds, [],
                      attention, {})
