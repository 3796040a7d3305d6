"""Values as they read in messages: numpy scalars and arrays as Python ones.

numpy 2 writes the repr of its scalars with their type (``np.str_('a')``,
``np.float64(1.0)``, ``np.int64(3)``), so a label taken from ``np.unique`` or
``classes_`` and shown with ``!r`` or inside a list would read so in an error message.
:func:`plain` turns them into ``'a'``, ``1.0`` and ``3`` first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plain"]


def plain(value):
    """``value`` with numpy scalars and arrays (also inside lists, tuples, sets and dict
    values) made Python values, for messages.

    >>> plain(np.str_("a")), plain(np.array([1, 2])), plain([np.float64(0.5)])
    ('a', [1, 2], [0.5])
    """
    if isinstance(value, np.ndarray):  # an object array's tolist() keeps numpy scalars
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value
