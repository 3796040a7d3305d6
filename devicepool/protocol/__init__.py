"""The paper's evaluation protocol (Table 3 and Fig. 2), resumable and reproducible.

The protocol of Naini, Singhal & Ghosh, run on any corpus Bunch returned by
:mod:`devicepool.datasets`:

* **Ex-1** (condition ``"MOBI"``): neutral speech only (MOBIPHONE in the paper);
* **Ex-2**: ``"N"`` neutral -> neutral, ``"W"`` whisper -> whisper, and the mismatched
  ``"N/W"`` (train on the neutral speech of the training speakers, test on the whispered
  speech of the held-out speakers) and ``"W/N"``.

Folds are speaker-disjoint: :class:`sklearn.model_selection.GroupKFold` on the speaker
ids of the whole corpus, so every mode uses the same folds and ``"N/W"`` tests the other
mode of the *same* held-out speakers. One model is fitted per (model, training mode,
fold) and serves every condition with that training mode (``"N"`` and ``"N/W"`` share
the neutral fits). Accuracy is utterance-level; Table 3 reports mean ± std over folds
(population standard deviation, ``ddof=0``) in percent.

Nothing is lost: every finished (model, condition, fold) result is written atomically
(temporary file + :func:`os.replace`) as JSON under ``out_dir/results/`` the moment it is
known, and a rerun with the same settings reuses it. A killed run loses at most the fits
in progress. Features (and the voicing labels of Fig. 2) are computed once per corpus, in
one pass over the audio, and cached (in memory and, with an ``out_dir``, on disk under
``out_dir/cache/``). Fits run here, in joblib worker processes (``n_jobs``) or on a
dask.distributed cluster (``docs/cluster.md``).

One run writes into an ``out_dir`` at a time: a run holds an exclusive lock on
``out_dir/.lock`` (a second one raises :class:`OutputLockedError`, or waits with
``wait=True``). Keys are content hashes: a corpus whose audio changed (even with the same
file sizes) does not reuse the results or features made from the old audio. A damaged
file (truncated, not JSON, lacking keys) is recomputed with a warning naming it. Files
are written with the umask's permissions.

Both protocols are a plan, the one engine, their measures and their report. Modules:
:mod:`.conditions` (conditions, folds, seeds), :mod:`.registry` (models), :mod:`.cache`
(features), :mod:`.engine` (one fit, the dispatch of many), :mod:`.runner` (Table 3:
:func:`run_protocol`, :func:`load_results`), :mod:`.fitting` (a Table-3 fit's predictions
and records), :mod:`.forensic` and :mod:`.forensic_eval` (the forensic protocol),
:mod:`.keys` (fingerprints, settings keys), :mod:`.lock` (the folder lock),
:mod:`.records` (the result record), :mod:`.store` (the result stores, Fig. 2 files),
:mod:`.report` (results, Table 3, figures).
"""

from .conditions import CONDITIONS, MODES, PAPER_TABLE3, available_conditions, make_folds
from .forensic import (
    ForensicFits,
    ForensicResult,
    ForensicSplit,
    fit_forensic,
    forensic_splits,
    run_forensic_protocol,
)
from .lock import OutputLockedError
from .registry import FusionFactory, ModelSpec, get_model, register_model, registered_models, unregister_model
from .report import ProtocolResult, chance_levels, combine_results, paper_claims, write_report
from .runner import FitTask, load_results, run_protocol

__all__ = [
    "CONDITIONS",
    "FitTask",
    "FusionFactory",
    "ForensicFits",
    "ForensicResult",
    "ForensicSplit",
    "MODES",
    "ModelSpec",
    "OutputLockedError",
    "PAPER_TABLE3",
    "ProtocolResult",
    "available_conditions",
    "chance_levels",
    "combine_results",
    "fit_forensic",
    "forensic_splits",
    "get_model",
    "load_results",
    "make_folds",
    "paper_claims",
    "register_model",
    "registered_models",
    "run_forensic_protocol",
    "run_protocol",
    "unregister_model",
    "write_report",
]
