"""Features: pure functions and stateless transformers (no I/O beyond reading inputs).

* :class:`FilterBank` -- 24 log mel bands, 25 ms / 10 ms (the paper's front end).
* :class:`DFTMagnitude` -- |DFT| of 0.5 s segments (the DFT-CNN baseline's input).
* :class:`MFCC` -- cepstra (+ deltas) of the log filterbank (the classical systems).
* :class:`Waveform` -- the samples themselves (for models making their own features).
* :func:`voicing_labels` -- voiced / unvoiced / silence label per frame (for Fig. 2);
  :func:`voicing_codes` their int8 codes (indices into :data:`VOICING_CLASSES`).
* :class:`AttentionWeights` -- a network's per-utterance attention weights with the
  voicing codes of their frames (also :class:`devicepool.models.AttentionWeights`).
"""

from ._attention import AttentionWeights
from ._dft import DFTMagnitude, segment_spectra
from ._filterbank import LOG_FLOOR, FilterBank, log_mel_filterbank
from ._framing import (
    frame_signal,
    hz_to_mel,
    mel_band_edges,
    mel_filterbank,
    mel_to_hz,
    n_frames_for,
)
from ._mfcc import MFCC, deltas, mfcc
from ._voicing import VOICING_CLASSES, voicing_codes, voicing_labels
from ._waveform import Waveform

__all__ = [
    "FilterBank",
    "DFTMagnitude",
    "MFCC",
    "mfcc",
    "deltas",
    "Waveform",
    "LOG_FLOOR",
    "frame_signal",
    "hz_to_mel",
    "mel_band_edges",
    "mel_filterbank",
    "mel_to_hz",
    "n_frames_for",
    "log_mel_filterbank",
    "segment_spectra",
    "voicing_labels",
    "voicing_codes",
    "AttentionWeights",
    "VOICING_CLASSES",
]
