"""FilterBank and DFTMagnitude: oracle against librosa, shapes, parameters, errors."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from devicepool import DFTMagnitude, FilterBank, load_audio
from devicepool.features import LOG_FLOOR, mel_filterbank, n_frames_for

ORACLE = dict(n_fft=400, window="hann", preemphasis=0.0, f_min=0.0)


def librosa_log_mel(y):
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=400, hop_length=160, win_length=400, window="hann",
        center=False, power=2.0, n_mels=24, fmin=0, fmax=8000, htk=True, norm=None,
    )
    return np.log(mel).T


def test_oracle_librosa_on_noise_and_harmonics(rng):
    t = np.arange(48000) / 16000
    y = 0.3 * rng.standard_normal(48000) + 0.5 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    ours = FilterBank(**ORACLE).transform([y])[0]
    ref = librosa_log_mel(y)
    assert ours.shape == ref.shape == (1 + (48000 - 400) // 160, 24)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize(
    "relpath", ["fsdd/recordings/3_theo_7.wav", "fsdd/recordings/7_george_12.wav",
                "whisper_sample/sample_whisper.wav"],
)
def test_oracle_librosa_on_real_speech(shared_data, relpath):
    y = load_audio(shared_data / relpath, 16000).astype(np.float64)
    ours = FilterBank(**ORACLE).transform([y])[0]
    ref = librosa_log_mel(y)
    assert ours.shape == ref.shape
    loud = ref.max(axis=1) > ref.max() - 18  # non-silent frames (within ~80 dB of the peak)
    assert loud.mean() > 0.3
    # FilterBank floors band energies at 1e-10 before the log (documented): bands of 8 kHz
    # FSDD recordings above 4 kHz hold less than that after resampling and are compared
    # against the floor instead
    expected = np.maximum(ref[loud], np.log(LOG_FLOOR))
    assert np.abs(ours[loud] - expected).max() < 1e-4


def test_filters_match_librosa_htk_unnormalised():
    librosa = pytest.importorskip("librosa")
    for n_fft, f_min, f_max in [(400, 0.0, 8000.0), (512, 20.0, 8000.0), (512, 300.0, 3400.0)]:
        ours = mel_filterbank(16000, n_fft, 24, f_min, f_max)
        ref = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=24, fmin=f_min, fmax=f_max, htk=True, norm=None)
        np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 48123])
def test_frame_count_rule_and_time_first_float32(n, rng):
    feats = FilterBank().transform([rng.standard_normal(n)])
    assert feats.dtype == object and feats.shape == (1,)
    assert feats[0].shape == (1 + (n - 400) // 160, 24) == (n_frames_for(n, 400, 160), 24)
    assert feats[0].dtype == np.float32


def test_variable_lengths_are_never_truncated(rng):
    lengths = [400, 16000, 123457]
    feats = FilterBank().transform([rng.standard_normal(n) for n in lengths])
    assert [f.shape[0] for f in feats] == [FilterBank().n_frames(n) for n in lengths]


def test_default_configuration_is_the_papers():
    fb = FilterBank()
    cfg = fb._config()
    assert (fb.frame_length, fb.frame_shift, cfg.n_fft) == (400, 160, 512)
    assert fb.get_feature_names_out().tolist() == [f"mel{k:02d}" for k in range(24)]
    freqs = fb.band_frequencies()
    assert freqs.shape == (24,) and 20 < freqs[0] < freqs[-1] < 8000


def test_frames_are_independent_and_local(rng):
    """A change in the last frame's samples changes only the frames that contain them."""
    x = rng.standard_normal(16000)
    y = x.copy()
    y[-100:] += 1.0
    a, b = FilterBank(preemphasis=0.0).transform([x, y])
    changed = np.flatnonzero(np.abs(a - b).max(axis=1) > 0)
    # only the frames overlapping the last 100 samples (frame t covers [160 t, 160 t + 400))
    first = next(t for t in range(len(a)) if 160 * t + 400 > 16000 - 100)
    assert changed.tolist() == list(range(first, len(a)))


def test_preemphasis_and_window_change_the_output(rng):
    x = rng.standard_normal(8000)
    base = FilterBank().transform([x])[0]
    assert not np.allclose(base, FilterBank(preemphasis=0.0).transform([x])[0])
    assert not np.allclose(base, FilterBank(window="hann").transform([x])[0])


def test_silence_gives_the_log_floor():
    out = FilterBank().transform([np.zeros(1600)])[0]
    np.testing.assert_allclose(out, np.log(1e-10), rtol=1e-6)


def test_n_jobs_gives_identical_results(rng):
    X = [rng.standard_normal(n) for n in (800, 4000, 16000, 9999)]
    seq = FilterBank().transform(X)
    par = FilterBank(n_jobs=2).transform(X)
    for a, b in zip(seq, par):
        np.testing.assert_array_equal(a, b)


def test_integer_input_equals_scaled_float(rng):
    x16 = (rng.standard_normal(4000) * 3000).astype(np.int16)
    a, b = FilterBank().transform([x16, x16 / 32768.0])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_file_and_array_give_the_same_features(tmp_path, rng):
    import soundfile as sf

    x = 0.1 * rng.standard_normal(8000)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    a, b = FilterBank().transform([x, tmp_path / "a.wav"])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_file_at_8khz_is_resampled_before_features(tmp_path, rng):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", 0.1 * rng.standard_normal(8000), 8000, subtype="FLOAT")
    out = FilterBank().transform([tmp_path / "a.wav"])[0]
    assert out.shape == (FilterBank().n_frames(16000), 24)
    # upper bands (above 4 kHz) hold almost no energy after 8 -> 16 kHz resampling
    high = FilterBank().band_frequencies() > 4500
    assert out[:, high].mean() < out[:, ~high].mean() - 5


# ---------------------------------------------------------------- parameter errors -------
@pytest.mark.parametrize(
    "params, exc, pattern",
    [
        (dict(sample_rate=0), ValueError,
         r"The 'sample_rate' parameter of FilterBank must be an int in the range \[1, inf\); got 0\."),
        (dict(sample_rate=-16000), ValueError, r"'sample_rate' parameter of FilterBank must be an int"),
        (dict(frame_shift_ms=0), ValueError,
         r"'frame_shift_ms' parameter of FilterBank must be a float in the range \(0, inf\)"),
        (dict(frame_shift_ms=-10.0), ValueError, r"'frame_shift_ms' parameter of FilterBank must be"),
        (dict(frame_length_ms=0), ValueError,
         r"'frame_length_ms' parameter of FilterBank must be a float in the range \(0, inf\)"),
        (dict(n_mels=200), ValueError, "n_mels=200 is too large for n_fft=512"),
        (dict(n_mels=40, n_fft=64, frame_length_ms=4.0), ValueError, "covers no FFT bin"),
        (dict(f_max=9000.0), ValueError, "f_max=9000.0 Hz is above the Nyquist frequency 8000.0"),
        (dict(f_min=4000.0, f_max=4000.0), ValueError, "f_min=4000.0 Hz must be below f_max"),
        (dict(f_min=5000.0, f_max=3000.0), ValueError, "must be below f_max"),
        (dict(f_min=-1.0), ValueError,
         r"'f_min' parameter of FilterBank must be a float in the range \[0, inf\); got -1\.0"),
        (dict(n_fft=256), ValueError, "smaller than the frame length"),
        (dict(window="nonsense"), ValueError, "unknown window"),
        (dict(preemphasis=1.5), ValueError,
         r"'preemphasis' parameter of FilterBank must be a float in the range \[0, 1\)"),
        (dict(n_mels=2.5), TypeError,
         r"'n_mels' parameter of FilterBank must be an int in the range \[1, inf\); got 2\.5"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, exc, pattern):
    x = [np.ones(16000)]
    for call in (lambda: FilterBank(**params).fit(x), lambda: FilterBank(**params).transform(x)):
        with pytest.raises(exc, match=pattern):
            call()


# ---------------------------------------------------------------- DFTMagnitude ------------
@pytest.mark.parametrize(
    "n, n_segments",
    [(4000, 1), (7999, 1), (8000, 1), (11999, 1), (12000, 2), (16000, 2), (20000, 3), (83999, 10), (84000, 11)],
)
def test_dft_segment_counts(n, n_segments, rng):
    out = DFTMagnitude().transform([rng.standard_normal(n)])[0]
    assert out.shape == (n_segments, 4001) and out.dtype == np.float32


def test_dft_values_are_segment_magnitudes(rng):
    x = rng.standard_normal(20000)
    out = DFTMagnitude(window=None).transform([x])[0]
    np.testing.assert_allclose(out[0], np.abs(np.fft.rfft(x[:8000])), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out[1], np.abs(np.fft.rfft(x[8000:16000])), rtol=1e-5, atol=1e-3)
    # the trailing 4000 samples: the last whole 0.5 s of the utterance, no zero padding
    np.testing.assert_allclose(out[2], np.abs(np.fft.rfft(x[-8000:])), rtol=1e-5, atol=1e-3)


def test_dft_short_utterance_is_zero_padded(rng):
    x = rng.standard_normal(5000)
    out = DFTMagnitude(window=None).transform([x])[0]
    np.testing.assert_allclose(out[0], np.abs(np.fft.rfft(np.r_[x, np.zeros(3000)])), rtol=1e-5, atol=1e-3)
    # a taper covers the utterance's own samples, then the zeros follow
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(5000) / 5000)
    out = DFTMagnitude().transform([x])[0]
    np.testing.assert_allclose(out[0], np.abs(np.fft.rfft(np.r_[x * hann, np.zeros(3000)])), rtol=1e-5, atol=1e-3)


def test_dft_default_window_is_periodic_hann(rng):
    x = rng.standard_normal(20000)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(8000) / 8000)
    out = DFTMagnitude().transform([x])[0]
    for row, seg in zip(out, (x[:8000], x[8000:16000], x[-8000:])):
        np.testing.assert_allclose(row, np.abs(np.fft.rfft(seg * hann)), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(DFTMagnitude(window="boxcar").transform([x])[0],
                                  DFTMagnitude(window=None).transform([x])[0])


def test_dft_hann_window_keeps_a_strong_tone_out_of_the_high_band():
    # why the taper is the default: a loud 200.25 Hz tone (between bins) and a faint
    # 5 kHz band. The rectangular window's sidelobes of the tone bury the faint band;
    # the Hann window's do not.
    t = np.arange(8000) / 16000
    x = np.sin(2 * np.pi * 200.25 * t) + 1e-4 * np.sin(2 * np.pi * 5000 * t)
    band = slice(2400, 2600)  # 4.8-5.2 kHz, bins of 2 Hz
    for window, visible in ((None, False), ("hann", True)):
        spec = DFTMagnitude(window=window).transform([x])[0][0]
        peak = spec[2500]
        floor = np.median(np.r_[spec[band.start:2490], spec[2511:band.stop]])
        assert bool(peak > 100 * floor) is visible, (window, peak, floor)


def test_dft_whole_segments_only(rng):
    dft = DFTMagnitude(min_segment_fraction=1.0)
    assert dft.transform([rng.standard_normal(15999)])[0].shape == (1, 4001)
    with pytest.raises(ValueError, match=r"utterance 0: 7999 samples is shorter than the shortest usable segment \(8000 of 8000"):
        dft.transform([rng.standard_normal(7999)])


def test_dft_too_short_names_index(rng):
    with pytest.raises(ValueError, match=r"utterance 1: 3999 samples is shorter than the shortest usable segment \(4000 of 8000"):
        DFTMagnitude().transform([rng.standard_normal(9000), rng.standard_normal(3999)])


def test_dft_n_jobs_gives_identical_results(rng):
    X = [rng.standard_normal(n) for n in (8000, 12000, 30000, 5000, 16000)]
    for a, b in zip(DFTMagnitude().transform(X), DFTMagnitude(n_jobs=2).transform(X)):
        np.testing.assert_array_equal(a, b)


def test_dft_other_rates_and_names():
    dft = DFTMagnitude(sample_rate=8000, segment_ms=250.0)
    assert (dft.segment_length, dft.n_bins) == (2000, 1001)
    names = DFTMagnitude().get_feature_names_out()
    assert names.shape == (4001,) and names[0] == "dft_0Hz" and names[-1] == "dft_8000Hz"


@pytest.mark.parametrize(
    "params, pattern",
    [
        (dict(sample_rate=0), r"'sample_rate' parameter of DFTMagnitude must be an int"),
        (dict(segment_ms=0), r"'segment_ms' parameter of DFTMagnitude must be a float in the range \(0, inf\)"),
        (dict(min_segment_fraction=0), r"'min_segment_fraction' parameter of DFTMagnitude must be a float in the range \(0, 1\]"),
        (dict(min_segment_fraction=1.5), r"'min_segment_fraction' parameter of DFTMagnitude must be a float in the range \(0, 1\]"),
        (dict(window="nope"), r"window='nope' is not a window scipy.signal.get_window knows .*or None for the rectangular"),
        (dict(window=3), r"'window' parameter of DFTMagnitude must be"),
    ],
)
def test_dft_bad_parameters(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        DFTMagnitude(**params).transform([np.ones(8000)])


def test_dft_nan_names_index():
    x = np.ones(9000)
    x[100] = np.nan
    with pytest.raises(ValueError, match="utterance 0: contains NaN"):
        DFTMagnitude().transform([x])


# ---------------------------------------------------------------- property test ----------
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=st.integers(min_value=400, max_value=6000).flatmap(
        lambda n: arrays(np.float64, n, elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))
    )
)
def test_any_finite_waveform_gives_finite_features_of_the_right_shape(x):
    out = FilterBank().transform([x])[0]
    assert out.shape == (1 + (len(x) - 400) // 160, 24)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("make", [FilterBank, DFTMagnitude])
def test_a_file_too_short_is_named_by_its_path(tmp_path, make):
    import soundfile as sf

    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(100), 16000)
    with pytest.raises(ValueError, match=r"utterance 1 \(file '.*short\.wav'\): 100 samples is shorter"):
        make().transform([np.zeros(16000), str(path)])
