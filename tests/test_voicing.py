"""Tests of the frame-level voiced / unvoiced / silence labeller."""

import numpy as np
import pytest
import soundfile as sf

from devicepool.features import VOICING_CLASSES, FilterBank, voicing_labels

SPEAKERS = ["jackson", "nicolas", "theo", "yweweler", "george", "lucas"]


def harmonic_tone(f0=150.0, seconds=1.0, sample_rate=16000, amplitude=0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 8))
    return amplitude * x / np.abs(x).max()


def fractions(labels, mask=None):
    labels = labels if mask is None else labels[mask]
    return {c: float(np.mean(labels == c)) for c in VOICING_CLASSES}


# ----------------------------------------------------------------- synthetic signals


def test_classes_constant():
    assert VOICING_CLASSES == ("voiced", "unvoiced", "silence")


@pytest.mark.parametrize("f0", [100.0, 150.0, 250.0])
def test_harmonic_tone_is_voiced(f0):
    labels = voicing_labels(harmonic_tone(f0))
    assert labels.ndim == 1
    assert set(labels.tolist()) <= set(VOICING_CLASSES)
    assert np.all(labels == "voiced")


def test_white_noise_is_unvoiced(rng):
    labels, feats = voicing_labels(0.1 * rng.standard_normal(16000), return_features=True)
    assert np.all(labels == "unvoiced")
    assert feats["periodicity"].max() < 0.5
    assert feats["zcr_hz"].mean() > 6000  # about half the samples change sign


def test_digital_silence_is_silence():
    assert np.all(voicing_labels(np.zeros(8000)) == "silence")
    assert np.all(voicing_labels(np.zeros(8000, dtype=np.int16)) == "silence")


def test_quiet_noise_below_floor_is_silence(rng):
    # -80 dBFS hiss: below the absolute -60 dBFS floor
    assert np.all(voicing_labels(1e-4 * rng.standard_normal(8000)) == "silence")


def test_relative_silence_between_tones(rng):
    tone = harmonic_tone(seconds=0.5)
    gap = 1.6e-3 * rng.standard_normal(8000)  # -56 dBFS: above the floor, 35+ dB under the tone
    labels, feats = voicing_labels(np.concatenate([tone, gap, tone]), return_features=True)
    assert feats["level_db"][:45].min() - feats["level_db"][55:95].max() > 35
    assert np.all(labels[5:45] == "voiced")
    assert np.all(labels[53:95] == "silence")
    assert np.all(labels[103:-5] == "voiced")
    # alone, the same hiss is not silence (the level is relative to the loud frames)
    assert np.all(voicing_labels(gap) == "unvoiced")


@pytest.mark.parametrize(
    "n_samples, sample_rate, length_ms, shift_ms",
    [(16000, 16000, 25.0, 10.0), (16399, 16000, 25.0, 10.0), (400, 16000, 25.0, 10.0),
     (5148, 8000, 25.0, 10.0), (12345, 22050, 30.0, 7.5)],
)
def test_frame_count_matches_filterbank(rng, n_samples, sample_rate, length_ms, shift_ms):
    x = 0.1 * rng.standard_normal(n_samples)
    labels = voicing_labels(x, sample_rate, length_ms, shift_ms)
    length = round(sample_rate * length_ms / 1000)
    shift = round(sample_rate * shift_ms / 1000)
    assert labels.shape == (1 + (n_samples - length) // shift,)
    fb = FilterBank(sample_rate=sample_rate, frame_length_ms=length_ms, frame_shift_ms=shift_ms)
    assert labels.shape[0] == fb.fit_transform([x])[0].shape[0]


def test_path_input_is_resampled(tmp_path):
    tone = harmonic_tone(sample_rate=8000)
    path = tmp_path / "tone.wav"
    sf.write(path, tone, 8000)
    labels = voicing_labels(path, sample_rate=16000)
    assert labels.shape == (1 + (16000 - 400) // 160,)
    assert np.mean(labels == "voiced") > 0.95
    assert np.array_equal(voicing_labels(str(path), 8000), voicing_labels(tone, 8000))


def test_integer_input_matches_float():
    tone = harmonic_tone()
    ints = np.round(tone * 32767).astype(np.int16)
    assert np.array_equal(voicing_labels(ints), voicing_labels(ints / 32768.0))


def test_features_are_returned_per_frame(rng):
    labels, feats = voicing_labels(harmonic_tone(), return_features=True)
    assert set(feats) == {"level_db", "periodicity", "zcr_hz"}
    for value in feats.values():
        assert value.shape == labels.shape
    assert np.all(feats["periodicity"] > 0.9)
    assert np.all((feats["periodicity"] >= 0) & (feats["periodicity"] <= 1))


def test_thresholds_change_the_labels(rng):
    tone = harmonic_tone()
    assert np.all(voicing_labels(tone, periodicity_threshold=1.01) == "unvoiced")
    assert np.all(voicing_labels(tone, silence_floor_db=0.0) == "silence")


# ----------------------------------------------------------------- errors


def test_too_short_raises():
    with pytest.raises(ValueError, match="shorter than one frame of 400 samples"):
        voicing_labels(np.zeros(399))


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        voicing_labels(tmp_path / "nope.wav")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"f0_min": 500.0}, "f0_min < f0_max"),
        ({"loud_percentile": 120}, "loud_percentile"),
        ({"silence_rel_db": -1}, "silence_rel_db"),
        ({"zcr_max_hz": 0}, "zcr_max_hz"),
        ({"clip_fraction": 1.0}, "clip_fraction"),
        ({"smooth_frames": 4}, "smooth_frames"),
        ({"frame_length_ms": 0}, "frame_length_ms"),
        ({"sample_rate": -8000}, "sample_rate"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        voicing_labels(np.zeros(16000), **kwargs)


def test_bad_input_types_raise():
    with pytest.raises(TypeError):
        voicing_labels(np.zeros(1000, dtype=bool))
    with pytest.raises(ValueError, match="1-D"):
        voicing_labels(np.zeros((2, 1000)))
    with pytest.raises(ValueError, match="NaN"):
        voicing_labels(np.full(1000, np.nan))
    with pytest.raises(TypeError, match="smooth_frames"):
        voicing_labels(np.zeros(1000), smooth_frames=3.0)


# ----------------------------------------------------------------- real recordings


def test_real_digit_is_mostly_voiced(shared_data):
    path = shared_data / "fsdd" / "recordings" / "0_jackson_0.wav"
    labels, feats = voicing_labels(path, sample_rate=8000, return_features=True)
    loud = (labels != "silence") & (feats["level_db"] >= feats["level_db"].max() - 15)
    assert loud.sum() >= 20
    assert fractions(labels, loud)["voiced"] > 0.75  # measured 0.91


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_real_voiced_digits_all_speakers(shared_data, sample_rate):
    """'one' and 'nine' are voiced throughout: vowels and nasals, no fricative."""
    voiced = []
    for digit in (1, 9):
        for speaker in SPEAKERS:
            for i in range(3):
                path = shared_data / "fsdd" / "recordings" / f"{digit}_{speaker}_{i}.wav"
                labels, feats = voicing_labels(path, sample_rate, return_features=True)
                loud = (labels != "silence") & (feats["level_db"] >= feats["level_db"].max() - 15)
                voiced.append(fractions(labels, loud)["voiced"])
    voiced = np.array(voiced)
    assert voiced.mean() > 0.85  # measured 0.95 at 8 and 16 kHz
    assert voiced.min() > 0.6  # measured 0.77


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_real_whisper_is_mostly_unvoiced(shared_data, sample_rate):
    path = shared_data / "whisper_sample" / "sample_whisper.wav"
    labels = voicing_labels(path, sample_rate)
    speech = labels != "silence"
    assert speech.sum() > 100
    assert fractions(labels, speech)["unvoiced"] > 0.75  # measured 0.90
    # the whisper's leading pause is found
    assert (labels == "silence").sum() >= 20  # measured 39


def test_real_speech_padded_with_silence(shared_data):
    x, rate = sf.read(shared_data / "fsdd" / "recordings" / "1_theo_0.wav")
    pad = np.zeros(rate // 2)
    labels = voicing_labels(np.concatenate([pad, x, pad]), rate)
    n_pad = 1 + (pad.size - 200) // 80  # frames entirely inside the leading zeros
    assert np.all(labels[:n_pad] == "silence")
    assert np.all(labels[-n_pad:] == "silence")
    middle = labels[n_pad + 3 : -n_pad - 3]
    assert fractions(middle)["voiced"] > 0.5
