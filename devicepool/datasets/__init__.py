"""Corpora: loaders for MOBIPHONE, wSPIRE and any parallel folder, and an embedded corpus.

Every loader returns a frozen :class:`Corpus` with ``data`` (file paths or
waveforms, one per utterance), ``target`` (device names), ``groups`` (speaker ids),
``mode`` (``"neutral"``/``"whisper"``), ``utterance`` (an id shared by the parallel
recordings of one utterance across devices), ``sample_rate``, ``devices``,
``speakers_known``, ``DESCR`` and the loader's ``extra`` fields; ``return_X_y=True``
gives ``(data, target)`` instead. ``Corpus.from_bunch`` makes one of your own data.

* :func:`load_mobiphone` - MOBIPHONE (21 phones x 24 speakers, files split into
  utterances by silence).
* :func:`load_wspire` - wSPIRE (5 devices, neutral and whispered speech).
* :func:`load_audio_folder` - any corpus whose paths follow a pattern such as
  ``"{device}/{mode}/{speaker}_{utterance}.wav"``.
* :func:`make_device_corpus` - a parallel corpus built on the fly from synthetic or
  real speech, measured microphone responses (MicIRP, micirp.blogspot.com &
  Xaudia.com) and real codecs; no download needed.
"""

from ._base import Corpus
from ._devices import (
    DEFAULT_DEVICES,
    DeviceSpec,
    apply_device,
    available_codecs,
    eq_response,
    microphone_names,
)
from .corpus import (
    make_device_corpus,
    vocalise,
    vocalise_recordings,
    whisperise,
    whisperise_recordings,
)
from .folder import load_audio_folder
from .mobiphone import load_mobiphone, split_utterances
from .population import (
    DEFAULT_MICROPHONES,
    SIBLING_MICROPHONES,
    microphone_files,
    random_device,
    random_devices,
    speech_sources,
)
from .wspire import load_wspire

__all__ = [
    "Corpus",
    "load_mobiphone",
    "load_wspire",
    "load_audio_folder",
    "make_device_corpus",
    "split_utterances",
    "whisperise",
    "whisperise_recordings",
    "vocalise",
    "vocalise_recordings",
    "DeviceSpec",
    "DEFAULT_DEVICES",
    "available_codecs",
    "apply_device",
    "eq_response",
    "microphone_names",
    "DEFAULT_MICROPHONES",
    "SIBLING_MICROPHONES",
    "microphone_files",
    "random_device",
    "random_devices",
    "speech_sources",
]
