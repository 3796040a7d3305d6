"""Audio input: arrays, integer scaling, files of many formats, resampling, errors."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from devicepool import FilterBank, load_audio
from devicepool.audio import as_waveform, check_utterance_set, read_audio_file


def tone(freq, n, rate):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def dominant_freq(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


@pytest.mark.parametrize(
    "dtype, value, expected",
    [
        (np.int16, [0, 16384, -32768], [0.0, 0.5, -1.0]),
        (np.int32, [0, 2**30, -(2**31)], [0.0, 0.5, -1.0]),
        (np.int8, [0, 64, -128], [0.0, 0.5, -1.0]),
        (np.uint8, [128, 192, 0], [0.0, 0.5, -1.0]),
        (np.float32, [0.25, -0.75, 2.0], [0.25, -0.75, 2.0]),
    ],
)
def test_integer_samples_are_scaled_floats_kept(dtype, value, expected):
    x = as_waveform(np.array(value, dtype=dtype), 16000)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, expected)


def test_python_list_of_numbers_is_an_utterance():
    np.testing.assert_allclose(as_waveform([0.1, 0.2], 16000), [0.1, 0.2])


def test_2d_array_is_a_set_of_equal_length_utterances():
    X = np.zeros((3, 800))
    items = check_utterance_set(X)
    assert len(items) == 3 and all(i.shape == (800,) for i in items)
    feats = FilterBank().transform(np.random.default_rng(0).standard_normal((3, 800)))
    assert feats.shape == (3,) and feats[0].shape == (3, 24)


@pytest.mark.parametrize(
    "fmt, subtype, atol",
    [
        ("WAV", "PCM_16", 1e-4),
        ("WAV", "PCM_24", 1e-6),
        ("WAV", "PCM_32", 1e-8),
        ("WAV", "FLOAT", 1e-7),
        ("FLAC", "PCM_16", 1e-4),
        ("FLAC", "PCM_24", 1e-6),
        ("OGG", "VORBIS", None),
        ("MP3", "MPEG_LAYER_III", None),
    ],
)
def test_files_of_each_format_are_read(tmp_path, fmt, subtype, atol):
    rate = 16000
    x = tone(440.0, rate, rate)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    for item in (str(path), path):  # str and PathLike
        y = load_audio(item, rate)
        assert y.dtype == np.float32 and y.ndim == 1
        if atol is not None:
            np.testing.assert_allclose(y, x, atol=atol)
        else:  # lossy codecs: same pitch, similar level, similar length
            assert abs(len(y) - len(x)) < 0.1 * rate
            assert abs(dominant_freq(y, rate) - 440.0) < 5
            assert 0.5 < np.std(y) / np.std(x) < 1.5


def test_multichannel_files_are_averaged(tmp_path):
    rate = 16000
    left, right = tone(300.0, 4000, rate), 0.2 * np.ones(4000)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, rate), (left + right) / 2, atol=1e-6)


def test_files_at_another_rate_are_resampled(tmp_path):
    path = tmp_path / "a8k.wav"
    sf.write(path, tone(500.0, 8000, 8000), 8000, subtype="FLOAT")
    y, rate = read_audio_file(path, 16000)
    assert rate == 16000 and y.shape == (16000,)
    assert abs(dominant_freq(y, 16000) - 500.0) < 2
    # no energy above the original Nyquist (4 kHz): polyphase low-pass
    spec = np.abs(np.fft.rfft(y[1000:-1000]))
    freqs = np.fft.rfftfreq(len(y) - 2000, 1 / 16000)
    assert spec[freqs > 4500].max() < 1e-3 * spec.max()
    y44, _ = read_audio_file(path, 44100)
    assert y44.shape == (44100,)


def test_real_speech_file_is_read_and_resampled(shared_data):
    path = shared_data / "fsdd" / "recordings" / "0_jackson_0.wav"
    native, rate = read_audio_file(path)
    assert rate == 8000
    y = load_audio(path, 16000)
    assert abs(len(y) - 2 * len(native)) <= 1
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.5


# ---------------------------------------------------------------- bad input ---------------
def test_empty_utterance_names_index():
    with pytest.raises(ValueError, match=r"utterance 1: empty"):
        FilterBank().transform([np.zeros(800), np.zeros(0)])


def test_utterance_shorter_than_a_frame_names_index():
    with pytest.raises(ValueError, match=r"utterance 2: 399 samples is shorter than one frame"):
        FilterBank().transform([np.ones(800), np.ones(400), np.ones(399)])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_name_index(bad):
    x = np.ones(1000)
    x[7] = bad
    with pytest.raises(ValueError, match=r"utterance 1: contains NaN or infinite samples \(first at sample 7\)"):
        FilterBank().transform([np.ones(800), x])


def test_more_than_two_dimensions():
    with pytest.raises(ValueError, match=r"X has 3 dimensions"):
        FilterBank().transform(np.zeros((2, 3, 800)))


def test_two_dimensional_item_in_a_list():
    with pytest.raises(ValueError, match=r"utterance 0: samples must be 1-D \(mono\)"):
        FilterBank().transform([np.zeros((800, 2))])


@pytest.mark.parametrize(
    "item, exc, pattern",
    [
        ({"a": 1}, TypeError, "got dict"),
        (None, TypeError, "got NoneType"),
        (3.0, TypeError, "got float"),
        (np.array(["a", "b"]), TypeError, "float or integer array"),
        (np.ones(800, dtype=bool), TypeError, "float or integer array"),
        (np.ones(800, dtype=complex), ValueError, "Complex data not supported"),
    ],
)
def test_unsupported_item_types(item, exc, pattern):
    with pytest.raises(exc, match=rf"utterance 1: .*{pattern}"):
        FilterBank().transform([np.ones(800), item])


@pytest.mark.parametrize(
    "X, exc, pattern",
    [
        ("speech.wav", TypeError, "single path"),
        (Path("speech.wav"), TypeError, "single path"),
        (5, TypeError, "sequence of utterances"),
        ([], ValueError, "X is empty"),
        (np.zeros(800), ValueError, "1-D numeric array"),
    ],
)
def test_unsupported_containers(X, exc, pattern):
    with pytest.raises(exc, match=pattern):
        FilterBank().transform(X)


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match=rf"utterance 1 \(file '{missing}'\): no such file"):
        FilterBank().transform([np.ones(800), missing])


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 10, os.urandom(2048)])
def test_corrupt_file_names_path(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"utterance 0 \(file '.*broken.wav'\): unreadable or corrupt"):
        FilterBank().transform([str(path)])


def test_directory_is_not_an_audio_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        FilterBank().transform([tmp_path])


def test_errors_are_raised_before_anything_is_returned():
    fb = FilterBank()
    with pytest.raises(ValueError, match="utterance 3"):
        fb.transform([np.ones(800)] * 3 + [np.ones(10)])
    # fit checks in-memory utterances too, without computing features
    with pytest.raises(ValueError, match="utterance 1: contains NaN"):
        fb.fit([np.ones(800), np.full(800, np.nan)])


@pytest.mark.parametrize("item", [np.array([0, 1000, -1000], dtype=np.int64),
                                  np.array([0, 5], dtype=np.uint64), [0, 1000, -1000]])
def test_64_bit_integer_samples_are_refused_not_silenced(item):
    # np.asarray of a list of Python ints is int64: as PCM it would be digital silence
    with pytest.raises(TypeError, match=r"utterance 2: (int64|uint64) samples are ambiguous.*int16"):
        as_waveform(item, 16000, index=2)
    with pytest.raises(TypeError, match=r"utterance 1: .*int16 or int32"):
        FilterBank().transform([np.zeros(800, np.float32), item])


def test_truncated_wav_warns_with_its_path_and_reads_what_is_there(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, np.random.default_rng(0).normal(0, 0.1, 16000), 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"utterance 4 \(file '.*cut\.wav'\): truncated audio file.*7989 frames"):
        x, rate = read_audio_file(cut, index=4)
    assert rate == 16000 and len(x) == 7989
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact file reads without a warning
        read_audio_file(full)
