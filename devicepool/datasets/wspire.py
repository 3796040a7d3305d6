"""Loader for the wSPIRE parallel neutral/whispered speech corpus."""

from __future__ import annotations

import dataclasses

from .._validation import validate_params
from ..audio import check_sample_rate
from .folder import _FOLDER_CONSTRAINTS, load_audio_folder

__all__ = ["load_wspire", "WSPIRE_DEVICES", "WSPIRE_PATTERN"]

#: The five parallel recording devices of wSPIRE.
WSPIRE_DEVICES = ("Zoom H6", "Philips headphones", "iPhone 7", "Nokia 5.1", "Moto e5 plus")

#: Default expected layout of a wSPIRE copy.
WSPIRE_PATTERN = "{device}/{mode}/{speaker}_{utterance}.wav"


def load_wspire(
    root,
    *,
    pattern=WSPIRE_PATTERN,
    devices=None,
    modes=None,
    strict=True,
    check_files=True,
    sample_rate=None,
    return_X_y=False,
):
    """Load wSPIRE: 5 parallel devices, 88 speakers, 50 sentences in neutral and whisper.

    wSPIRE is distributed without a documented folder layout, so this loader expects
    the layout below (rename or link your copy to match, or pass another ``pattern``)::

        <root>/
            Zoom H6/
                neutral/
                    spk001_s01.wav      # {speaker}_{utterance}.wav, 16 kHz mono
                    ...
                whisper/                # "whispered" is accepted too
                    spk001_s01.wav
            Philips headphones/ ...
            iPhone 7/ ...
            Nokia 5.1/ ...
            Moto e5 plus/ ...

    Device folder names are used as labels as they are (the five above are the
    paper's devices; other names are accepted). The speaker and sentence parts must
    not be empty and are split at the first ``_`` that lets the rest match. This is
    :func:`load_audio_folder` with ``pattern="{device}/{mode}/{speaker}_{utterance}.wav"``;
    any extra named field in a custom ``pattern`` is kept as an array in ``extra``.

    Parameters
    ----------
    root : str or os.PathLike
        The wSPIRE folder.
    pattern : str, default="{device}/{mode}/{speaker}_{utterance}.wav"
        Path pattern, see :func:`load_audio_folder`.
    devices : sequence of str, optional
        Keep only these devices (each must have files).
    modes : sequence of {"neutral", "whisper"}, optional
        Keep only these modes, e.g. ``["whisper"]``.
    strict : bool, default=True
        A file that does not match ``pattern`` is an error (False: skipped).
    check_files : bool, default=True
        Open every file's header to reject unreadable files early.
    sample_rate : int, optional
        Rate to report; ``None`` uses the files' (common) rate, 16000 for wSPIRE.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the corpus.

    Returns
    -------
    corpus : Corpus
        ``data`` (file paths), ``target`` (device), ``groups`` (speaker), ``mode``
        (``"neutral"``/``"whisper"``), ``utterance`` (``"{speaker}_{sentence}_{mode}"``,
        shared by the 5 devices), ``sample_rate``, ``devices``, ``target_names``,
        ``file_sample_rate``, ``utterance_label`` (the sentence id from the file
        name, shared across speakers), extra field arrays and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        Empty folder, files not matching the layout, unreadable files, a device folder
        with no files, an unknown mode folder.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> for dev in ["Zoom H6", "iPhone 7"]:
    ...     for mode in ["neutral", "whisper"]:
    ...         os.makedirs(os.path.join(root, dev, mode))
    ...         sf.write(os.path.join(root, dev, mode, "spk01_s01.wav"), np.zeros(800), 16000)
    >>> b = load_wspire(root)
    >>> b.devices, b.mode.tolist()
    (['Zoom H6', 'iPhone 7'], ['neutral', 'whisper', 'neutral', 'whisper'])
    """
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate, owner="load_wspire")
    validate_params(
        dict(root=root, pattern=pattern, devices=devices, modes=modes, strict=strict,
             check_files=check_files, sample_rate=sample_rate, return_X_y=return_X_y),
        _FOLDER_CONSTRAINTS, owner="load_wspire",
    )
    corpus = load_audio_folder(
        root,
        pattern,
        devices=devices,
        modes=modes,
        strict=strict,
        check_files=check_files,
        sample_rate=sample_rate,
        return_X_y=return_X_y,
        name="wSPIRE",
    )
    if return_X_y:
        return corpus
    return dataclasses.replace(corpus, DESCR=(
        "wSPIRE: parallel neutral and whispered speech recorded by 5 devices (Zoom H6, "
        "Philips headphones, iPhone 7, Nokia 5.1, Moto e5 plus), 88 speakers x 50 "
        "sentences per mode, 16 kHz.\n\n" + corpus.DESCR))
