"""Parameter and input validation, in scikit-learn's style (the bottom layer).

Every module of devicepool validates its parameters and inputs through this module, so
that there is one wording for "this parameter is out of range" and one way to name
where an error is:

* parameters are *declared*: a class (or function) lists, per parameter, the things a
  value may be (:class:`Interval`, :class:`StrOptions`, ``None``, a type, or one of the
  strings ``"boolean"``, ``"callable"``, ``"random_state"``, ``"array-like"``,
  ``"path-like"``), and :func:`validate_params` checks them, raising
  :class:`InvalidParameterError` with a message such as::

      The 'max_epochs' parameter of DACNNClassifier must be an int in the range
      [1, inf); got 0.

* a location in an error message is written by :func:`where`: ``"utterance 3"``,
  ``"utterance 3 (file 'a.wav')"``, ``"file 'a.wav'"`` or ``"utterance"``;

* :func:`check_feature_set` validates a set of per-utterance feature arrays (the input
  of the classifiers).

This module imports only numpy and the standard library; every other module may import
it.
"""

from __future__ import annotations

import numbers
import os
import reprlib
import warnings

import numpy as np

__all__ = [
    "InvalidParameterError",
    "Interval",
    "Options",
    "StrOptions",
    "validate_params",
    "check_param",
    "where",
    "check_feature_set",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has a value (or a type) that its constraints do not allow.

    It subclasses both :class:`ValueError` and :class:`TypeError`, so code catching
    either keeps working.
    """


# --------------------------------------------------------------------------- constraints

def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _type_name(t):
    """``int`` -> ``'int'``, ``numbers.Real`` -> ``'float'``, others their qualified name."""
    if t is numbers.Integral or t is int:
        return "int"
    if t is numbers.Real or t is float:
        return "float"
    if t is bool:
        return "bool"
    if t is str:
        return "str"
    module = getattr(t, "__module__", "builtins")
    qualname = getattr(t, "__qualname__", repr(t))
    return qualname if module == "builtins" else f"{module}.{qualname}"


class Interval:
    """An interval of numbers: the values of ``type`` between ``left`` and ``right``.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
        ``numbers.Integral`` admits Python and numpy integers; ``numbers.Real`` admits
        them and floats (not NaN). Booleans are never numbers here.
    left, right : number or None
        The bounds; ``None`` means unbounded (and open) on that side, so infinities
        are outside ``Interval(Real, 0, None, ...)``; use ``np.inf`` as a closed bound
        to admit them.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.

    Examples
    --------
    >>> str(Interval(numbers.Integral, 1, None, closed="left"))
    'an int in the range [1, inf)'
    """

    def __init__(self, type, left, right, *, closed):
        if type not in (numbers.Integral, numbers.Real, int, float):
            raise TypeError(f"Interval type must be numbers.Integral or numbers.Real, got {type!r}")
        if type is int:
            type = numbers.Integral
        elif type is float:
            type = numbers.Real
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(
                f"closed must be 'left', 'right', 'both' or 'neither', got {closed!r}"
            )
        if left is not None and right is not None and right < left:
            raise ValueError(f"right bound {right} is less than left bound {left}")
        self.type = type
        self.left = left
        self.right = right
        self.closed = closed

    def __contains__(self, value):
        if _is_bool(value) or not isinstance(value, self.type):
            return False
        if isinstance(value, numbers.Real) and np.isnan(value):
            return False
        # an unbounded side is open: (0, inf) holds no infinity; write right=np.inf,
        # closed="right" or "both" to admit it
        if self.left is None and value == -np.inf or self.right is None and value == np.inf:
            return False
        if self.left is not None:
            if self.closed in ("left", "both"):
                if value < self.left:
                    return False
            elif value <= self.left:
                return False
        if self.right is not None:
            if self.closed in ("right", "both"):
                if value > self.right:
                    return False
            elif value >= self.right:
                return False
        return True

    def is_satisfied_by(self, value):
        return value in self

    def __str__(self):
        kind = "an int" if self.type is numbers.Integral else "a float"
        lb = "[" if self.closed in ("left", "both") and self.left is not None else "("
        rb = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        return f"{kind} in the range {lb}{left}, {right}{rb}"

    def __repr__(self):
        return (f"Interval({_type_name(self.type)}, {self.left!r}, {self.right!r}, "
                f"closed={self.closed!r})")


class Options:
    """A discrete set of allowed values of one type.

    Parameters
    ----------
    type : type
    values : set
    """

    def __init__(self, type, values):
        self.type = type
        self.values = frozenset(values)

    def is_satisfied_by(self, value):
        if not isinstance(value, self.type) or (_is_bool(value) and self.type is not bool):
            return False
        try:
            return value in self.values
        except TypeError:  # unhashable
            return False

    def __str__(self):
        shown = ", ".join(repr(v) for v in sorted(self.values, key=repr))
        kind = _type_name(self.type)
        article = "an" if kind[:1] in "aeiou" else "a"
        return f"{article} {kind} among {{{shown}}}"

    def __repr__(self):
        return f"Options({_type_name(self.type)}, {set(self.values)!r})"


class StrOptions(Options):
    """A discrete set of allowed strings, e.g. ``StrOptions({"mean", "max"})``."""

    def __init__(self, values):
        super().__init__(str, values)

    def __repr__(self):
        return f"StrOptions({set(self.values)!r})"


class _NoneConstraint:
    def is_satisfied_by(self, value):
        return value is None

    def __str__(self):
        return "None"


class _InstanceOf:
    def __init__(self, type):
        self.type = type

    _NUMBERS = (int, float, numbers.Integral, numbers.Real, numbers.Number)

    def is_satisfied_by(self, value):
        if _is_bool(value) and self.type in self._NUMBERS:
            return False  # bool is an int subclass; a bool is never a number here
        return isinstance(value, self.type)

    def __str__(self):
        return f"an instance of {_type_name(self.type)!r}"


class _Booleans:
    def is_satisfied_by(self, value):
        return _is_bool(value)

    def __str__(self):
        return "a bool"


class _Callables:
    def is_satisfied_by(self, value):
        return callable(value)

    def __str__(self):
        return "a callable"


class _RandomStates:
    _seed = Interval(numbers.Integral, 0, None, closed="left")

    def is_satisfied_by(self, value):
        return (
            value is None
            or value in self._seed
            or isinstance(value, (np.random.RandomState, np.random.Generator))
        )

    def __str__(self):
        return ("a random state (None, an int in the range [0, inf), "
                "a numpy.random.RandomState or a numpy.random.Generator)")


class _ArrayLikes:
    def is_satisfied_by(self, value):
        if isinstance(value, (str, bytes)) or np.isscalar(value) or value is None:
            return False
        if isinstance(value, np.ndarray):
            return value.ndim > 0
        return (hasattr(value, "__len__") or hasattr(value, "shape")
                or hasattr(value, "__array__"))

    def __str__(self):
        return "an array-like"


class _PathLikes:
    def is_satisfied_by(self, value):
        return isinstance(value, (str, os.PathLike))

    def __str__(self):
        return "a path (str or os.PathLike)"


_NAMED = {
    "boolean": _Booleans,
    "callable": _Callables,
    "random_state": _RandomStates,
    "array-like": _ArrayLikes,
    "path-like": _PathLikes,
}


def _make_constraint(c):
    if hasattr(c, "is_satisfied_by"):  # Interval, Options, StrOptions, or a custom one
        return c
    if c is None:
        return _NoneConstraint()
    if isinstance(c, str):
        try:
            return _NAMED[c]()
        except KeyError:
            raise ValueError(
                f"unknown constraint {c!r}; expected one of {sorted(_NAMED)}"
            ) from None
    if isinstance(c, type) or (isinstance(c, tuple) and all(isinstance(t, type) for t in c)):
        return _InstanceOf(c)
    raise ValueError(f"unknown constraint {c!r}")


_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80


def _describe_value(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return _repr.repr(value)


def _describe(constraints):
    return " or ".join(str(_make_constraint(c)) for c in constraints)


def validate_params(params, constraints, *, owner):
    """Check parameter values against their declared constraints.

    Parameters
    ----------
    params : dict
        ``{name: value}``. Parameters absent from ``constraints`` are not checked.
    constraints : dict
        ``{name: [constraint, ...]}``: a value is valid when it satisfies any of its
        constraints. A constraint is an :class:`Interval`, an :class:`Options` /
        :class:`StrOptions`, ``None`` (the value ``None`` is allowed), a type (the
        value must be an instance of it; a bool is never an ``int``), or one of the
        strings ``"boolean"``, ``"callable"``, ``"random_state"`` (None, an int
        >= 0, or a numpy RandomState / Generator), ``"array-like"``, ``"path-like"``.
        ``"no_validation"`` skips the parameter.
    owner : str
        The class or function the parameters belong to, named in the message.

    Raises
    ------
    InvalidParameterError
        e.g. ``The 'max_epochs' parameter of DACNNClassifier must be an int in the
        range [1, inf); got 0.``
    """
    for name, value in params.items():
        if name not in constraints:
            continue
        allowed = constraints[name]
        if allowed == "no_validation":
            continue
        if not isinstance(allowed, (list, tuple)):
            allowed = [allowed]
        if any(_make_constraint(c).is_satisfied_by(value) for c in allowed):
            continue
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {_describe(allowed)}; "
            f"got {_describe_value(value)}."
        )


def check_param(value, name, constraints, *, owner):
    """Validate one parameter (see :func:`validate_params`) and return it unchanged."""
    validate_params({name: value}, {name: constraints}, owner=owner)
    return value


# --------------------------------------------------------------------------- locations

def where(index=None, path=None):
    """Name where an error is, for the prefix of an error message.

    >>> where(3)
    'utterance 3'
    >>> where(3, "a.wav")
    "utterance 3 (file 'a.wav')"
    >>> where(path="a.wav")
    "file 'a.wav'"
    >>> where()
    'utterance'
    """
    if path is None:
        return "utterance" if index is None else f"utterance {index}"
    file = f"file {str(os.fsdecode(path))!r}"  # np.str_ and bytes paths print as plain str
    return file if index is None else f"utterance {index} ({file})"


# --------------------------------------------------------------------------- feature sets

def check_feature_set(X, *, n_features=None, owner="estimator", name="X"):
    """Validate a set of per-utterance feature arrays.

    Parameters
    ----------
    X : sequence of array-like of shape (n_frames, n_features), or ndarray
        A list (or 1-D object array) of 2-D arrays of any length; a 3-D numeric array
        ``(n_utterances, n_frames, n_features)``; or a 2-D numeric array
        ``(n_utterances, n_features)`` read as one-frame utterances.
    n_features : int, optional
        The feature width the caller expects (e.g. ``n_features_in_``).
    owner : str
        The estimator named in the width-mismatch message.
    name : str
        The name of the whole set in messages about the container.

    Returns
    -------
    list of ndarray
        C-contiguous float32 arrays of shape ``(n_frames, n_features)``.

    Raises
    ------
    ValueError, TypeError
        Naming the offending utterance (``utterance 3: ...``) and the rule.
    """
    items = _feature_set_items(X, name)
    out = []
    for i, u in enumerate(items):
        a = _check_feature_array(u, i)
        if out and a.shape[1] != out[0].shape[1]:
            raise ValueError(
                f"{where(i)}: has {a.shape[1]} features per frame but {where(0)} has "
                f"{out[0].shape[1]}; all utterances must have the same feature width"
            )
        out.append(a)
    width = out[0].shape[1]
    if n_features is not None and width != n_features:
        raise ValueError(
            f"X has {width} features, but {owner} is expecting {n_features} "
            "features as input (feature width per frame)."
        )
    return out


def _feature_set_items(X, name):
    """The utterances of a feature set's container (see :func:`check_feature_set`)."""
    if X is None:
        raise TypeError(f"{name} must be an utterance set, got None")
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name}: sparse input is not supported; pass dense feature arrays")
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} must be a set of feature arrays, not a path or string; extract "
            "features first (e.g. with devicepool.features.FilterBank)"
        )
    arr = None
    if isinstance(X, np.ndarray) and (X.dtype != object or X.ndim >= 2):
        arr = X
    elif not isinstance(X, np.ndarray) and not isinstance(X, (list, tuple)):
        try:
            arr = np.asarray(X)  # e.g. pandas DataFrame, torch tensor
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} of type {type(X).__name__} is not an utterance set") from exc
        if arr.dtype == object:
            X, arr = list(arr), None
    elif isinstance(X, (list, tuple)) and len(X) and not isinstance(X[0], np.ndarray):
        # a list of lists may be a plain rectangular numeric table
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cand = np.asarray(X)
            if cand.dtype.kind in "biufc" and cand.ndim in (2, 3):
                arr = cand
        except (ValueError, TypeError):
            arr = None
    items = list(X) if arr is None else _table_items(arr, name)
    if len(items) == 0:
        raise ValueError(f"{name} is an empty utterance set (0 utterances); need at least 1")
    return items


def _table_items(arr, name):
    """Utterances of a numeric 2-D (one-frame utterances) or 3-D array."""
    if arr.dtype.kind == "c":
        raise ValueError(f"{name}: Complex data not supported")
    if arr.ndim in (2, 3) and arr.shape[-1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float32)
        except TypeError as exc:
            raise TypeError(f"{name} could not be converted to float: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{name} could not be converted to float: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, None, :]
    elif arr.ndim != 3:
        raise ValueError(
            f"{name} must be an utterance set: a sequence of (n_frames, n_features) arrays, "
            f"a 3-D array (n_utterances, n_frames, n_features) or a 2-D array of one-frame "
            f"utterances (n_utterances, n_features); got a {arr.ndim}-D array of shape "
            f"{arr.shape}. Reshape your data, e.g. X.reshape(1, -1) for a single row."
        )
    return list(arr)


def _check_feature_array(u, i):
    """One utterance's features as a C-contiguous finite float32 ``(n_frames, n_features)``."""
    at = where(i)
    if isinstance(u, (str, bytes, os.PathLike)):
        raise TypeError(f"{at}: is a path or string; extract features first (e.g. FilterBank)")
    if hasattr(u, "toarray"):
        raise TypeError(f"{at}: sparse input is not supported")
    try:
        a = np.asarray(u)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{at}: an object of type {type(u).__name__} is not an array") from exc
    if a.dtype.kind == "c":
        raise ValueError(f"{at}: Complex data not supported")
    if a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float32)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{at}: could not be converted to float (dtype {a.dtype}): {exc}") from exc
    if a.ndim != 2:
        raise ValueError(
            f"{at}: has shape {a.shape}; every utterance must be a 2-D array "
            "(n_frames, n_features), time first"
        )
    if a.shape[0] < 1:
        raise ValueError(f"{at}: has 0 frames; every utterance needs at least 1 frame")
    if a.shape[1] < 1:
        raise ValueError(f"{at}: has 0 features per frame")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{at}: contains NaN or infinity; features must be finite")
    return a
