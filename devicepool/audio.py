"""Audio input: turn an utterance (samples or a file path) into a mono float waveform.

An *utterance* is either

* a 1-D array-like of samples (float dtypes are taken as they are; 8- to 32-bit integer
  dtypes are PCM, scaled to [-1, 1) by ``2 ** (bits - 1)``, unsigned integers centred
  first; 64-bit integers are refused: ``np.asarray`` makes them of any list of Python
  ints, and as PCM they would be digital silence), or
* a path (``str`` or :class:`os.PathLike`) to any file :mod:`soundfile` reads (WAV,
  FLAC, OGG/Vorbis/Opus, MP3, ... with 16/24/32-bit or float samples). Multi-channel
  files are averaged to mono; a file at another rate is resampled to the requested
  rate with a polyphase filter (:func:`scipy.signal.resample_poly`).

An *utterance set* is a sequence (list, tuple or 1-D object ndarray) of utterances,
or a 2-D numeric array ``(n_utterances, n_samples)`` of equal-length waveforms.

Every error names the utterance index (and the path for files) and the rule broken.
"""

from __future__ import annotations

import os
import re
import warnings
from fractions import Fraction
from numbers import Integral

import numpy as np
import scipy.sparse
from numpy.typing import DTypeLike

from ._typing import ArrayLike, PathLike
from ._validation import Interval, validate_params, where

__all__ = ["load_audio", "read_audio_file", "check_utterance_set", "as_waveform"]


def _is_path(item):
    return isinstance(item, (str, os.PathLike))


def check_utterance_set(X):
    """Return the utterances of ``X`` as a list, checking the container.

    Parameters
    ----------
    X : sequence of utterances, 1-D object ndarray, or ndarray of shape (n_utterances, n_samples)
        The utterance set. Items are checked later, one by one, by :func:`as_waveform`.

    Returns
    -------
    items : list
        One entry per utterance (arrays, array-likes or paths).

    Raises
    ------
    TypeError
        ``X`` is a single path, a scalar or another unsupported container.
    ValueError
        ``X`` is empty, a 1-D numeric array (ambiguous: one waveform or many?) or has
        more than 2 dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> len(check_utterance_set(np.zeros((3, 800))))
    3
    """
    if _is_path(X):
        raise TypeError(
            f"X must be a sequence of utterances, got a single path {os.fspath(X)!r}; "
            "wrap it in a list: [path]"
        )
    if scipy.sparse.issparse(X):
        raise TypeError(
            "X is a sparse matrix: sparse input is not supported; utterances must be dense "
            "arrays of samples or file paths"
        )
    if isinstance(X, (bytes, dict, set)) or np.isscalar(X) or X is None:
        raise TypeError(
            "X must be a sequence of utterances (list of arrays or paths, or a 2-D array "
            f"(n_utterances, n_samples)), got {type(X).__name__}"
        )
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # DataFrame: rows are utterances
        X = X.to_numpy()
    if not isinstance(X, (np.ndarray, list, tuple)) and hasattr(X, "__array__"):
        X = np.asarray(X)
    if isinstance(X, np.ndarray):
        if X.dtype == object:
            if X.ndim == 2:  # rows of Python numbers
                try:
                    X = X.astype(np.float64)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"a 2-D object array of shape {X.shape} must hold numbers only"
                    ) from None
            elif X.ndim != 1:
                raise ValueError(
                    f"an object array of utterances must be 1-D, got shape {X.shape}"
                )
            items = list(X)
        elif X.ndim == 2:
            items = list(X)
        elif X.ndim == 1:
            raise ValueError(
                f"X is a 1-D numeric array of {X.shape[0]} values: pass a list of "
                "utterances. Reshape your data with X.reshape(1, -1) for a single waveform"
            )
        elif X.ndim == 0:
            raise TypeError("X must be a sequence of utterances, got a 0-d array")
        else:
            raise ValueError(
                f"X has {X.ndim} dimensions (shape {X.shape}); an utterance set is a "
                "sequence of 1-D waveforms or a 2-D array (n_utterances, n_samples)"
            )
    else:
        try:
            items = list(X)
        except TypeError:
            raise TypeError(
                "X must be a sequence of utterances (list of arrays or paths, or a 2-D "
                f"array), got {type(X).__name__}"
            ) from None
    if len(items) == 0:
        raise ValueError("X is empty: an utterance set needs at least one utterance")
    return items


def _scale_integers(x):
    info = np.iinfo(x.dtype)
    half = 2.0 ** (info.bits - 1)
    if info.min == 0:  # unsigned: centre first
        return (x.astype(np.float64) - half) / half
    return x.astype(np.float64) / half


_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _warn_if_truncated(info, at, n_frames, rate):
    """Warn when libsndfile reports a data chunk shorter than its header says (a
    truncated or partly written file: only the samples present are read)."""
    m = _DATA_SIZE.search(info or "")
    if m and int(m.group(2)) < int(m.group(1)):
        warnings.warn(
            f"{at}: truncated audio file: the header announces {m.group(1)} bytes of "
            f"samples but {m.group(2)} are present; read {n_frames} frames "
            f"({n_frames / rate:.2f} s)", UserWarning, stacklevel=4)


def soundfile_name(path):
    """``path`` as :mod:`soundfile` opens it: bytes on POSIX, so that a file name that is
    not valid UTF-8 (held as surrogates by :func:`os.fsdecode`) opens too.

    >>> soundfile_name("a.wav") == (b"a.wav" if os.name == "posix" else "a.wav")
    True
    """
    return os.fsencode(path) if os.name == "posix" else os.fspath(path)


def read_audio_file(path, sample_rate=None, *, index=None, dtype=np.float64):
    """Read an audio file as a mono waveform, resampled to ``sample_rate``.

    Parameters
    ----------
    path : str or os.PathLike
        Any file format libsndfile reads (WAV, FLAC, OGG, MP3, ...).
    sample_rate : int or None
        Target rate in Hz. ``None`` keeps the file's own rate.
    index : int, optional
        Position of the utterance in its set, used in error messages.
    dtype : numpy dtype, default=float64
        Floating dtype of the returned samples.

    Returns
    -------
    waveform : ndarray of shape (n_samples,)
        Mono samples in [-1, 1] (channels averaged).
    rate : int
        The rate of ``waveform`` (``sample_rate`` when given).

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        The file is not readable audio (corrupt, unknown format, a folder...).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(800), 8000)
    >>> x, rate = read_audio_file(path, 16000)
    >>> x.shape, rate
    ((1600,), 16000)
    """
    import soundfile as sf

    at = where(index, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{at}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{at}: is a directory, not an audio file")
    try:
        with sf.SoundFile(soundfile_name(path)) as fh:
            data = fh.read(dtype="float64", always_2d=True)
            rate, info = fh.samplerate, fh.extra_info
    except Exception as exc:  # libsndfile raises its own error types
        raise ValueError(f"{at}: unreadable or corrupt audio file ({exc})") from None
    _warn_if_truncated(info, at, len(data), rate)
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is not None and int(rate) != int(sample_rate):
        x = resample(x, int(rate), int(sample_rate))
        rate = int(sample_rate)
    return np.ascontiguousarray(x, dtype=dtype), int(rate)


def resample(x, orig_rate, target_rate):
    """Resample ``x`` from ``orig_rate`` to ``target_rate`` with a polyphase filter.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    orig_rate, target_rate : int
        Rates in Hz.

    Returns
    -------
    y : ndarray of shape (ceil(n_samples * target_rate / orig_rate),)

    Examples
    --------
    >>> resample(np.ones(8000), 8000, 16000).shape
    (16000,)
    """
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_rate), int(orig_rate))
    if ratio == 1:
        return x
    return resample_poly(x, ratio.numerator, ratio.denominator)


def as_waveform(item, sample_rate, *, index=None, dtype=np.float64):
    """Return one utterance as a finite, non-empty, mono waveform.

    Parameters
    ----------
    item : array-like of shape (n_samples,), str or os.PathLike
        Samples (float taken as is, integers scaled to [-1, 1)) or an audio file path.
    sample_rate : int
        Rate files are resampled to. Arrays are assumed to be at this rate already.
    index : int, optional
        Position in the utterance set, for error messages.
    dtype : numpy dtype, default=float64

    Returns
    -------
    waveform : ndarray of shape (n_samples,)

    Raises
    ------
    TypeError
        Unsupported item type or dtype (bool, complex, strings in an array, ...).
    ValueError
        Empty, not 1-D, or non-finite samples; unreadable file.
    FileNotFoundError
        Missing file.

    Examples
    --------
    >>> as_waveform(np.array([0, 16384, -32768], dtype=np.int16), 16000)
    array([ 0. ,  0.5, -1. ])
    """
    if _is_path(item):
        x, _ = read_audio_file(item, sample_rate, index=index, dtype=dtype)
        at = where(index, item)
    else:
        at = where(index)
        if isinstance(item, (bytes, dict, set)) or item is None or np.isscalar(item):
            raise TypeError(
                f"{at}: expected a 1-D array of samples or a file path, got "
                f"{type(item).__name__}"
            )
        try:
            x = np.asarray(item)
        except Exception:
            raise TypeError(
                f"{at}: expected a 1-D array of samples or a file path, got "
                f"{type(item).__name__}"
            ) from None
        if x.dtype.kind == "c":
            raise ValueError(f"{at}: Complex data not supported (dtype {x.dtype})")
        if x.dtype.kind not in "iuf":
            raise TypeError(
                f"{at}: samples must be a float or integer array, got dtype {x.dtype}"
            )
        if x.ndim != 1:
            raise ValueError(
                f"{at}: samples must be 1-D (mono), got shape {x.shape}; average "
                "the channels first, e.g. x.mean(axis=1)"
            )
        if x.dtype.kind in "iu" and x.dtype.itemsize > 4:
            raise TypeError(
                f"{at}: {x.dtype} samples are ambiguous (np.asarray of a list of Python "
                "ints gives int64, which would scale to digital silence); pass float "
                "samples in [-1, 1] or integer PCM as int16 or int32, e.g. "
                "x.astype(np.int16)"
            )
        if x.dtype.kind in "iu":
            x = _scale_integers(x)
        x = np.ascontiguousarray(x, dtype=dtype)
    if x.shape[0] == 0:
        raise ValueError(f"{at}: empty utterance (0 samples)")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"{at}: contains NaN or infinite samples (first at sample {bad})")
    return x


def load_audio(item: ArrayLike | PathLike, sample_rate: int = 16000, *,
               dtype: DTypeLike = np.float32) -> np.ndarray:
    """Load one utterance (array or file path) as a mono waveform at ``sample_rate``.

    Parameters
    ----------
    item : array-like of shape (n_samples,), str or os.PathLike
    sample_rate : int, default=16000
    dtype : numpy dtype, default=float32

    Returns
    -------
    waveform : ndarray of shape (n_samples,)

    Examples
    --------
    >>> load_audio(np.zeros(10, dtype=np.int16)).dtype
    dtype('float32')
    """
    sample_rate = check_sample_rate(sample_rate, owner="load_audio")
    return as_waveform(item, sample_rate, dtype=dtype)


#: The constraint on every ``sample_rate`` parameter (in Hz).
SAMPLE_RATE = Interval(Integral, 1, None, closed="left")


def check_sample_rate(sample_rate, *, owner="check_sample_rate"):
    """Return ``sample_rate`` as an ``int`` of Hz, raising unless it is a positive integer.

    A float holding a whole number (``16000.0``) is accepted and returned as an int.

    Parameters
    ----------
    sample_rate : int
    owner : str, default="check_sample_rate"
        The class or function whose parameter it is, named in the error message.

    Raises
    ------
    InvalidParameterError
        (a ``ValueError`` and a ``TypeError``), e.g. ``The 'sample_rate' parameter of
        FilterBank must be an int in the range [1, inf); got 0.``
    """
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)
    validate_params({"sample_rate": sample_rate}, {"sample_rate": [SAMPLE_RATE]}, owner=owner)
    return int(sample_rate)
