"""Tests of devicepool._validation: declared parameter constraints, where(), feature sets."""

import inspect
import numbers
import re
from pathlib import Path

import numpy as np
import pytest

from devicepool._validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    check_feature_set,
    check_param,
    validate_params,
    where,
)

# --------------------------------------------------------------------------- error class

def test_invalid_parameter_error_is_value_and_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)
    for catch in (ValueError, TypeError):
        with pytest.raises(catch):
            validate_params({"n": 0}, {"n": [Interval(numbers.Integral, 1, None, closed="left")]},
                            owner="f")


# --------------------------------------------------------------------------- Interval

def test_interval_str():
    assert str(Interval(numbers.Integral, 1, None, closed="left")) == "an int in the range [1, inf)"
    assert str(Interval(numbers.Real, 0, None, closed="neither")) == "a float in the range (0, inf)"
    assert str(Interval(numbers.Real, 0, 1, closed="both")) == "a float in the range [0, 1]"
    assert str(Interval(numbers.Real, None, 1, closed="right")) == "a float in the range (-inf, 1]"
    assert str(Interval(numbers.Integral, 0, 5, closed="neither")) == "an int in the range (0, 5)"


@pytest.mark.parametrize("closed, inside, outside", [
    ("left", [0, 0.5], [1, -0.1]),
    ("right", [1, 0.5], [0, 1.1]),
    ("both", [0, 1, 0.5], [-0.1, 1.1]),
    ("neither", [0.5], [0, 1]),
])
def test_interval_bounds(closed, inside, outside):
    iv = Interval(numbers.Real, 0, 1, closed=closed)
    for v in inside:
        assert v in iv
    for v in outside:
        assert v not in iv


def test_interval_types():
    ints = Interval(numbers.Integral, 1, None, closed="left")
    reals = Interval(numbers.Real, 0, None, closed="neither")
    assert 3 in ints and np.int64(3) in ints and np.uint8(3) in ints
    assert 3.0 not in ints and "3" not in ints and None not in ints
    assert 3 in reals and 2.5 in reals and np.float32(2.5) in reals
    assert float("nan") not in reals
    assert float("inf") not in reals  # an unbounded side is open
    assert -np.inf not in Interval(numbers.Real, None, 0, closed="right")
    assert np.inf in Interval(numbers.Real, 0, np.inf, closed="both")
    assert "1" not in reals and [1] not in reals


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_interval_never_accepts_bools(value):
    assert value not in Interval(numbers.Integral, None, None, closed="neither")
    assert value not in Interval(numbers.Real, None, None, closed="neither")


def test_interval_rejects_bad_definition():
    with pytest.raises(ValueError, match="closed"):
        Interval(numbers.Real, 0, 1, closed="open")
    with pytest.raises(ValueError, match="less than"):
        Interval(numbers.Real, 1, 0, closed="both")
    with pytest.raises(TypeError):
        Interval(str, 0, 1, closed="both")


# --------------------------------------------------------------------------- validate_params

def _check(value, constraints):
    validate_params({"p": value}, {"p": constraints}, owner="Owner")


def _fails(value, constraints):
    with pytest.raises(InvalidParameterError):
        _check(value, constraints)


def test_message_format_exact():
    with pytest.raises(InvalidParameterError) as info:
        validate_params({"max_epochs": 0},
                        {"max_epochs": [Interval(numbers.Integral, 1, None, closed="left")]},
                        owner="DACNNClassifier")
    assert str(info.value) == (
        "The 'max_epochs' parameter of DACNNClassifier must be an int in the range "
        "[1, inf); got 0."
    )


def test_message_joins_allowed_items_with_or():
    with pytest.raises(InvalidParameterError) as info:
        validate_params({"crop_frames": "x"},
                        {"crop_frames": [Interval(numbers.Integral, 1, None, closed="left"), None]},
                        owner="SACNNClassifier")
    assert str(info.value) == (
        "The 'crop_frames' parameter of SACNNClassifier must be an int in the range "
        "[1, inf) or None; got 'x'."
    )


def test_message_of_array_value_is_short():
    with pytest.raises(InvalidParameterError, match=r"got an array of shape \(1000,\)\.$"):
        _check(np.zeros(1000), [Interval(numbers.Real, 0, None, closed="left")])


def test_unconstrained_parameters_are_not_checked():
    validate_params({"p": object(), "q": 1}, {"q": [int]}, owner="f")
    validate_params({"p": object()}, {"p": "no_validation"}, owner="f")


def test_single_constraint_without_list():
    _check(3, Interval(numbers.Integral, 1, None, closed="left"))
    _fails(0, Interval(numbers.Integral, 1, None, closed="left"))


def test_none_constraint():
    _check(None, [None])
    _check(None, [Interval(numbers.Integral, 1, None, closed="left"), None])
    _fails(None, [Interval(numbers.Integral, 1, None, closed="left")])
    _fails(0, [None])


def test_str_options():
    c = [StrOptions({"mean", "max"})]
    _check("mean", c)
    _fails("min", c)
    _fails(1, c)
    _fails(["mean"], c)  # unhashable
    with pytest.raises(InvalidParameterError, match=r"must be a str among \{'max', 'mean'\}; got 'min'"):
        _check("min", c)


def test_options_of_another_type():
    c = [Options(numbers.Integral, {1, 2})]
    _check(2, c)
    _fails(3, c)
    _fails(True, c)  # True == 1, but a bool is not an int here
    assert str(c[0]) == "an int among {1, 2}"


def test_type_constraint():
    _check("a", [str])
    _fails(1, [str])
    _check(1, [int])
    _fails(True, [int])  # a bool is never an int
    _fails(1.5, [int])
    _check(1.5, [float])
    _check(Path("x"), [Path])
    with pytest.raises(InvalidParameterError, match=r"must be an instance of 'str'; got 1\."):
        _check(1, [str])


def test_boolean_constraint():
    _check(True, ["boolean"])
    _check(np.bool_(False), ["boolean"])
    _fails(1, ["boolean"])
    _fails("yes", ["boolean"])
    _check(True, [bool])
    with pytest.raises(InvalidParameterError, match=r"must be a bool; got 1\."):
        _check(1, ["boolean"])


def test_callable_constraint():
    _check(len, ["callable"])
    _check(lambda x: x, ["callable"])
    _fails("len", ["callable"])
    with pytest.raises(InvalidParameterError, match="must be a callable"):
        _check(3, ["callable"])


def test_random_state_constraint():
    for ok in (None, 0, 42, np.int64(7), np.random.RandomState(0), np.random.default_rng(0)):
        _check(ok, ["random_state"])
    for bad in (-1, 1.5, "0", True, [0]):
        _fails(bad, ["random_state"])
    with pytest.raises(InvalidParameterError, match=r"must be a random state .*; got -1\."):
        _check(-1, ["random_state"])


def test_array_like_constraint():
    for ok in ([1, 2], (1,), np.zeros(3), np.zeros((2, 2))):
        _check(ok, ["array-like"])
    for bad in (1, 1.5, "abc", None, np.float64(1.0), np.array(1.0)):
        _fails(bad, ["array-like"])


def test_path_like_constraint():
    _check("a.wav", ["path-like"])
    _check(Path("a.wav"), ["path-like"])
    _fails(3, ["path-like"])


def test_unknown_constraint_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown constraint"):
        _check(1, ["positive"])


def test_check_param_returns_value():
    assert check_param(3, "n", [Interval(numbers.Integral, 1, None, closed="left")], owner="f") == 3
    with pytest.raises(InvalidParameterError, match=r"^The 'n' parameter of f must be"):
        check_param(0, "n", [Interval(numbers.Integral, 1, None, closed="left")], owner="f")


# --------------------------------------------------------------------------- where

def test_where():
    assert where(3) == "utterance 3"
    assert where(3, "a.wav") == "utterance 3 (file 'a.wav')"
    assert where(path="a.wav") == "file 'a.wav'"
    assert where(None, Path("a.wav")) == "file 'a.wav'"
    assert where() == "utterance"
    assert where(0) == "utterance 0"
    # numpy strings (items of a Bunch's data array) and bytes print like plain str
    assert where(path=np.str_("a.wav")) == "file 'a.wav'"
    assert where(2, b"a.wav") == "utterance 2 (file 'a.wav')"


def test_audio_uses_the_same_where():
    from devicepool import audio

    assert audio.where is where


# --------------------------------------------------------------------------- check_feature_set

def _u(n=4, f=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, f))


def test_feature_set_ok_variants():
    out = check_feature_set([_u(4), _u(7)])
    assert [a.shape for a in out] == [(4, 3), (7, 3)]
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in out)
    assert [a.shape for a in check_feature_set(np.zeros((2, 5, 3)))] == [(5, 3), (5, 3)]
    assert [a.shape for a in check_feature_set(np.zeros((2, 3)))] == [(1, 3), (1, 3)]
    assert [a.shape for a in check_feature_set([[1, 2], [3, 4]])] == [(1, 2), (1, 2)]
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = _u(2), _u(5)
    assert [a.shape for a in check_feature_set(obj)] == [(2, 3), (5, 3)]


def test_feature_set_none_sparse_path():
    with pytest.raises(TypeError, match="got None"):
        check_feature_set(None)
    with pytest.raises(TypeError, match="not a path or string"):
        check_feature_set("features.npy")

    class Sparse:
        def toarray(self):
            return np.zeros((2, 2))

    with pytest.raises(TypeError, match="sparse input is not supported"):
        check_feature_set(Sparse())


def test_feature_set_empty():
    with pytest.raises(ValueError, match="empty"):
        check_feature_set([])


def test_feature_set_container_rules():
    with pytest.raises(ValueError, match="Complex data not supported"):
        check_feature_set(np.zeros((2, 3), dtype=complex))
    with pytest.raises(ValueError, match=r"has 0 feature\(s\)"):
        check_feature_set(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="got a 4-D array"):
        check_feature_set(np.zeros((2, 2, 2, 2)))


def test_feature_set_nan_names_utterance():
    X = [_u(), _u(), _u(), _u()]
    X[3][1, 1] = np.nan
    with pytest.raises(ValueError, match=r"^utterance 3: contains NaN or infinity; features must be finite$"):
        check_feature_set(X)
    X[3][1, 1] = np.inf
    with pytest.raises(ValueError, match=r"^utterance 3: contains NaN or infinity"):
        check_feature_set(X)


def test_feature_set_shape_names_utterance():
    with pytest.raises(ValueError, match=r"^utterance 1: has shape \(5,\); every utterance must be a 2-D array"):
        check_feature_set([_u(), np.zeros(5)])


def test_feature_set_zero_frames_names_utterance():
    with pytest.raises(ValueError, match=r"^utterance 1: has 0 frames"):
        check_feature_set([_u(), np.zeros((0, 3))])


def test_feature_set_zero_features_names_utterance():
    with pytest.raises(ValueError, match=r"^utterance 0: has 0 features per frame"):
        check_feature_set([np.zeros((3, 0))])


def test_feature_set_width_mismatch_names_both_utterances():
    with pytest.raises(ValueError, match=re.escape(
            "utterance 2: has 4 features per frame but utterance 0 has 3")):
        check_feature_set([_u(f=3), _u(f=3), _u(f=4)])


def test_feature_set_item_path_names_utterance():
    with pytest.raises(TypeError, match=r"^utterance 1: is a path or string"):
        check_feature_set([_u(), "a.wav"])
    with pytest.raises(TypeError, match=r"^utterance 0: is a path or string"):
        check_feature_set([Path("a.wav")])


def test_feature_set_item_complex_names_utterance():
    with pytest.raises(ValueError, match=r"^utterance 1: Complex data not supported"):
        check_feature_set([_u(), _u().astype(complex)])


def test_feature_set_item_not_float_names_utterance():
    bad = np.array([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match=r"^utterance 1: could not be converted to float"):
        check_feature_set([_u(f=2), bad])


def test_feature_set_item_sparse_names_utterance():
    class Sparse:
        def toarray(self):
            return np.zeros((2, 2))

    with pytest.raises(TypeError, match=r"^utterance 1: sparse input is not supported"):
        check_feature_set([_u(), Sparse()])


def test_feature_set_n_features():
    check_feature_set([_u(f=3)], n_features=3)
    with pytest.raises(ValueError, match="X has 3 features, but DACNNClassifier is expecting 4"):
        check_feature_set([_u(f=3)], n_features=4, owner="DACNNClassifier")


# --------------------------------------------------------------------------- declared constraints in use

def _signature_params(func, skip=()):
    return {p for p in inspect.signature(func).parameters if p not in skip}


def test_transformers_declare_every_parameter():
    from devicepool.features import DFTMagnitude, FilterBank

    for cls in (FilterBank, DFTMagnitude):
        assert set(cls._parameter_constraints) == set(cls().get_params(deep=False)), cls


def test_functions_declare_every_parameter():
    from devicepool.datasets import corpus, folder, mobiphone, wspire
    from devicepool.features import _voicing

    assert set(_voicing._VOICING_CONSTRAINTS) == _signature_params(
        _voicing.voicing_labels, skip={"waveform"})
    assert set(corpus._CORPUS_CONSTRAINTS) == _signature_params(corpus.make_device_corpus)
    assert set(corpus._COPIES_CONSTRAINTS) == _signature_params(corpus.whisperise_recordings)
    assert set(corpus._COPIES_CONSTRAINTS) == _signature_params(corpus.vocalise_recordings)
    assert set(folder._FOLDER_CONSTRAINTS) == _signature_params(folder.load_audio_folder)
    assert _signature_params(wspire.load_wspire) <= set(folder._FOLDER_CONSTRAINTS)
    assert set(mobiphone._MOBIPHONE_CONSTRAINTS) == _signature_params(mobiphone.load_mobiphone)


def test_device_spec_declares_every_field():
    import dataclasses

    from devicepool.datasets import DeviceSpec

    assert set(DeviceSpec._parameter_constraints) == {
        f.name for f in dataclasses.fields(DeviceSpec)}
    with pytest.raises(InvalidParameterError, match=re.escape(
            "The 'clip' parameter of DeviceSpec 'x' must be a float in the range (0, 1] or None; "
            "got 0.")):
        DeviceSpec("x", "IR_AKGD12", clip=0)
    with pytest.raises(InvalidParameterError, match=re.escape(
            "The 'codec_rate' parameter of DeviceSpec 'x' must be an int in the range "
            "[4000, 192000] or None; got 100.")):
        DeviceSpec("x", "IR_AKGD12", codec_rate=100)


def test_check_sample_rate():
    from devicepool.audio import check_sample_rate

    assert check_sample_rate(16000) == 16000
    assert check_sample_rate(np.int32(8000)) == 8000
    assert check_sample_rate(16000.0) == 16000 and type(check_sample_rate(16000.0)) is int
    for bad in (0, -1, 16000.5, True, "16000", None, float("nan")):
        with pytest.raises(InvalidParameterError, match=r"^The 'sample_rate' parameter of f must be "
                                                        r"an int in the range \[1, inf\); got "):
            check_sample_rate(bad, owner="f")


@pytest.mark.parametrize("call, message", [
    (lambda: __import__("devicepool").FilterBank(n_mels=0).transform([np.ones(800)]),
     "The 'n_mels' parameter of FilterBank must be an int in the range [1, inf); got 0."),
    (lambda: __import__("devicepool").FilterBank(n_fft=1.5).fit(),
     "The 'n_fft' parameter of FilterBank must be an int in the range [1, inf) or None; got 1.5."),
    (lambda: __import__("devicepool").FilterBank(window=3).fit(),
     "The 'window' parameter of FilterBank must be an instance of 'str'; got 3."),
    (lambda: __import__("devicepool").FilterBank(frame_shift_ms=np.inf).fit(),
     "The 'frame_shift_ms' parameter of FilterBank must be a float in the range (0, inf); got inf."),
    (lambda: __import__("devicepool").FilterBank(n_mels=True).get_feature_names_out(),
     "The 'n_mels' parameter of FilterBank must be an int in the range [1, inf); got True."),
    (lambda: __import__("devicepool").DFTMagnitude(min_segment_fraction=1.5).fit(),
     "The 'min_segment_fraction' parameter of DFTMagnitude must be a float in the range (0, 1]; "
     "got 1.5."),
    (lambda: __import__("devicepool").voicing_labels(np.zeros(800), smooth_frames=0),
     "The 'smooth_frames' parameter of voicing_labels must be an int in the range [1, inf); got 0."),
    (lambda: __import__("devicepool").voicing_labels(np.zeros(800), frame_length_ms=-1),
     "The 'frame_length_ms' parameter of voicing_labels must be a float in the range (0, inf); "
     "got -1."),
])
def test_feature_parameter_messages(call, message):
    with pytest.raises(InvalidParameterError) as info:
        call()
    assert str(info.value) == message


def test_filterbank_accepts_whole_float_sample_rate():
    from devicepool import FilterBank

    a = FilterBank(sample_rate=16000.0).transform([np.ones(800)])[0]
    b = FilterBank(sample_rate=16000).transform([np.ones(800)])[0]
    np.testing.assert_array_equal(a, b)


def test_dataset_parameter_messages(tmp_path):
    from devicepool.datasets import (
        load_audio_folder,
        load_mobiphone,
        load_wspire,
        make_device_corpus,
        whisperise_recordings,
    )

    cases = [
        (lambda: make_device_corpus(n_utterances=0),
         "The 'n_utterances' parameter of make_device_corpus must be an int in the range "
         "[1, inf); got 0."),
        (lambda: make_device_corpus(sample_rate=4000),
         "The 'sample_rate' parameter of make_device_corpus must be an int in the range "
         "[8000, inf); got 4000."),
        (lambda: make_device_corpus(random_state=-1),
         "The 'random_state' parameter of make_device_corpus must be an int in the range "
         "[0, inf) or None; got -1."),
        (lambda: whisperise_recordings([np.zeros(100)], 16000, random_state=None),
         "The 'random_state' parameter of whisperise_recordings must be an int in the range "
         "[0, inf); got None."),
        (lambda: load_mobiphone(tmp_path, n_utterances_per_file=0),
         "The 'n_utterances_per_file' parameter of load_mobiphone must be an int in the range "
         "[1, inf) or None; got 0."),
        (lambda: load_audio_folder(tmp_path, sample_rate=0),
         "The 'sample_rate' parameter of load_audio_folder must be an int in the range "
         "[1, inf); got 0."),
        (lambda: load_wspire(tmp_path, strict="yes"),
         "The 'strict' parameter of load_wspire must be a bool; got 'yes'."),
        (lambda: load_audio_folder(3),
         "The 'root' parameter of load_audio_folder must be a path (str or os.PathLike); "
         "got 3."),
    ]
    for call, message in cases:
        with pytest.raises(InvalidParameterError) as info:
            call()
        assert str(info.value) == message


def test_plotting_parameter_messages():
    from devicepool.plotting import align_frame_labels, band_centre_frequencies, time_weight_histogram

    with pytest.raises(InvalidParameterError, match=re.escape(
            "The 'factor' parameter of align_frame_labels must be an int in the range [1, inf); "
            "got 0.")):
        align_frame_labels(["voiced"], 1, factor=0)
    with pytest.raises(InvalidParameterError, match=re.escape(
            "The 'n_levels' parameter of time_weight_histogram must be an int in the range "
            "[2, inf); got 1.")):
        time_weight_histogram([[1.0]], [["voiced"]], n_levels=1)
    with pytest.raises(InvalidParameterError, match="'n_bands' parameter of band_centre_frequencies"):
        band_centre_frequencies(0)


def test_locations_are_named_by_where(tmp_path):
    from devicepool import FilterBank
    from devicepool.datasets._base import probe_audio
    from devicepool.plotting import time_weight_histogram

    with pytest.raises(ValueError, match=r"^utterance 1: 10 samples is shorter than one frame"):
        FilterBank().transform([np.ones(800), np.ones(10)])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="^" + re.escape(f"{where(path=bad)}: unreadable")):
        probe_audio(bad)
    with pytest.raises(ValueError, match=r"^utterance 1: time weights must be finite"):
        time_weight_histogram([[1.0], [-1.0]], [["voiced"], ["voiced"]])
