"""Deprecated alias of :mod:`devicepool.protocol`, kept for one release.

Import from :mod:`devicepool.protocol` instead; this module re-exports its public names
unchanged, and ``_seed_for`` (:func:`devicepool.protocol.conditions.seed_for`).
"""

import warnings

from devicepool.protocol import (  # noqa: F401  (FitTask, ModelSpec, ...: re-exported too)
    CONDITIONS,
    PAPER_TABLE3,
    FitTask,
    ModelSpec,
    ProtocolResult,
    available_conditions,
    chance_levels,
    combine_results,
    get_model,
    load_results,
    make_folds,
    paper_claims,
    register_model,
    registered_models,
    run_protocol,
    unregister_model,
    write_report,
)
from devicepool.protocol.conditions import seed_for as _seed_for  # noqa: F401

__all__ = [
    "CONDITIONS",
    "PAPER_TABLE3",
    "ProtocolResult",
    "available_conditions",
    "chance_levels",
    "combine_results",
    "load_results",
    "make_folds",
    "paper_claims",
    "register_model",
    "registered_models",
    "run_protocol",
    "write_report",
]

warnings.warn("devicepool.experiments is deprecated; import from devicepool.protocol",
              DeprecationWarning, stacklevel=2)
