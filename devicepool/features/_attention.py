"""The per-utterance attention weights of a network, with the voicing of their frames."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from .._validation import where
from ._voicing import VOICING_CLASSES, voicing_codes

__all__ = ["AttentionWeights"]

#: ``AttentionWeights[key]`` for the mapping forms it replaces: a module's attention
#: (``time``, ``band``) and the protocol's Fig. 2 dict (``time_weights``, ...).
_ATTENTION_KEYS = {"time": "time", "band": "band", "time_weights": "time", "band_weights": "band",
                   "utterance_index": "utterance_index", "frame_labels": "frame_labels",
                   "time_reduction": "time_reductions"}


@dataclass(frozen=True, slots=True, eq=False)
class AttentionWeights:
    """Attention weights of an utterance set, and the voicing of their frames: the one
    numpy form from a classifier's ``predict_outputs`` through the protocol's files to
    Fig. 2.

    Parameters
    ----------
    time : sequence of array-like, each of shape (ceil(n_frames_i / time_reduction),)
        Time weights per utterance (stored float32), each summing to one.
    band : array-like of shape (n, n_bands), or None
        Band weights (DA-CNN), rows summing to one (stored float32); None for time-only
        attention.
    time_reduction : int or array-like of int, shape (n,), default=1
        Feature frames per time weight (4 for SA-/DA-CNN): weight ``j`` covers frames
        ``[j * time_reduction, (j + 1) * time_reduction)``; one per utterance when
        :meth:`concat` joins weights of networks that differ in it.
    utterance_index : array-like of int, shape (n,), optional
        The utterances' corpus positions (int64).
    voicing : sequence of array-like, each of shape (n_frames_i,), optional
        The voicing code of every feature frame (int8 indices into
        :data:`devicepool.features.VOICING_CLASSES`, or the class names).

    Notes
    -----
    ``att["time"]``, ``att["band"]`` and the keys of the protocol's former Fig. 2 dict
    (``"time_weights"``, ``"band_weights"``, ``"frame_labels"``, ``"utterance_index"``,
    ``"time_reduction"``: one per utterance) still read.

    Examples
    --------
    >>> att = AttentionWeights([[0.5, 0.5], [1.0]], time_reduction=4, voicing=[[0] * 7, ["silence"] * 3])
    >>> len(att), att.time_reduction, att.voicing[1].tolist(), att.frame_labels[0][:2].tolist()
    (2, 4, [2, 2, 2], ['voiced', 'voiced'])
    """

    time: list
    band: np.ndarray | None = None
    time_reduction: int | np.ndarray = 1
    utterance_index: np.ndarray | None = None
    voicing: list | None = None

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        put("time", [np.asarray(t, dtype=np.float32).ravel() for t in self.time])
        n = len(self.time)
        if self.band is not None:
            put("band", np.asarray(self.band, dtype=np.float32))
            if self.band.ndim != 2 or len(self.band) != n:
                raise ValueError(f"AttentionWeights.band must be (n_utterances={n}, n_bands), "
                                 f"got shape {self.band.shape}")
        r = np.asarray(self.time_reduction, dtype=np.int64)
        if r.ndim and len(set(r.tolist())) <= 1 and n:  # one reduction for all: an int
            r = r[0]
        if r.shape not in ((), (n,)) or np.any(r < 1):
            raise ValueError(f"AttentionWeights.time_reduction must be one int >= 1 or one per "
                             f"utterance ({n}), got {self.time_reduction!r}")
        put("time_reduction", int(r) if r.ndim == 0 else r)
        if self.utterance_index is not None:
            put("utterance_index", np.asarray(self.utterance_index, dtype=np.int64).ravel())
        if self.voicing is not None:
            put("voicing", [voicing_codes(v, where(i)) for i, v in enumerate(self.voicing)])
        for name in ("utterance_index", "voicing"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"AttentionWeights.{name} has {len(getattr(self, name))} entries "
                                 f"for {n} utterances")

    def __len__(self):
        return len(self.time)

    @property
    def time_reductions(self):
        """The time reduction of every utterance (list of int)."""
        return np.broadcast_to(self.time_reduction, (len(self),)).tolist()

    @property
    def frame_labels(self):
        """The voicing class names of every feature frame (list of str arrays), or None."""
        return None if self.voicing is None else [np.asarray(VOICING_CLASSES)[v] for v in self.voicing]

    def with_voicing(self, codes):
        """A copy with the voicing of its utterances: ``codes[i]`` is that of corpus utterance ``i``."""
        return dataclasses.replace(self, voicing=[codes[i] for i in self.utterance_index])

    @classmethod
    def concat(cls, parts):
        """The weights of ``parts`` one after the other (None for no parts)."""
        parts = list(parts)
        if not parts:
            return None
        bands = [p.band for p in parts if p.band is not None]
        return cls([t for p in parts for t in p.time], np.concatenate(bands) if bands else None,
                   [r for p in parts for r in p.time_reductions],
                   None if any(p.utterance_index is None for p in parts)
                   else np.concatenate([p.utterance_index for p in parts]),
                   None if any(p.voicing is None for p in parts) else [v for p in parts for v in p.voicing])

    def __getitem__(self, key):
        value = getattr(self, _ATTENTION_KEYS[key]) if key in _ATTENTION_KEYS else None
        if value is None:
            raise KeyError(key)
        return value
