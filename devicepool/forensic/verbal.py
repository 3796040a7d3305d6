"""Verbal equivalents of likelihood ratios, for reports to non-specialists.

The scale follows the style of the verbal scale of the **ENFSI Guideline for Evaluative
Reporting in Forensic Science** (European Network of Forensic Science Institutes, 2015,
its section on verbal equivalents), applied to ``|log10 LR|`` and in both directions:
a log10 LR above 0 supports H1 (the questioned recording was made with the reference
device), one below 0 supports H2 (it was made with another device of the relevant
population), with the same words for ``LR`` and ``1 / LR``:

==================  ==============================
``|log10 LR|``      verbal equivalent
==================  ==============================
0 exactly           no support for either hypothesis
[0, 1)              weak support
[1, 2)              moderate support
[2, 3)              moderately strong support
[3, 4)              strong support
[4, 5)              very strong support
>= 5                extremely strong support
==================  ==============================

The words summarise the number; they are not a second result. Report the LR itself
with them, and the hypotheses it compares.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["VERBAL_SCALE", "verbal_equivalent"]

#: ``(lower bound of |log10 LR|, words)``, in increasing order; a value falls in the
#: last row whose bound it reaches.
VERBAL_SCALE = (
    (0.0, "weak support"),
    (1.0, "moderate support"),
    (2.0, "moderately strong support"),
    (3.0, "strong support"),
    (4.0, "very strong support"),
    (5.0, "extremely strong support"),
)

_H1 = "H1 (same device)"
_H2 = "H2 (another device)"


def verbal_equivalent(log10_lr):
    """The verbal equivalent of a log10 likelihood ratio (ENFSI 2015 style scale).

    Source: ENFSI Guideline for Evaluative Reporting in Forensic Science (2015), its
    verbal scale, applied to ``|log10 LR|`` in both directions (see the module).

    Parameters
    ----------
    log10_lr : float
        log10 of the LR of H1 (same device) vs H2 (another device); ``inf`` and
        ``-inf`` are allowed (extremely strong support).

    Returns
    -------
    words : str
        E.g. ``"moderate support for H1 (same device)"``; exactly 0 gives
        ``"no support for either hypothesis"``.

    Raises
    ------
    TypeError
        Not a real number.
    ValueError
        NaN.

    Examples
    --------
    >>> verbal_equivalent(1.3)
    'moderate support for H1 (same device)'
    >>> verbal_equivalent(-2.0)
    'moderately strong support for H2 (another device)'
    >>> verbal_equivalent(0.0)
    'no support for either hypothesis'
    """
    if isinstance(log10_lr, bool) or not isinstance(log10_lr, Real):
        raise TypeError(f"verbal_equivalent: log10_lr must be a real number; got "
                        f"{type(log10_lr).__name__}")
    value = float(log10_lr)
    if math.isnan(value):
        raise ValueError("verbal_equivalent: log10_lr is NaN")
    if value == 0.0:
        return "no support for either hypothesis"
    magnitude = abs(value)
    words = next(w for bound, w in reversed(VERBAL_SCALE) if magnitude >= bound)
    return f"{words} for {_H1 if value > 0 else _H2}"
