"""Tests of the corpus loaders on small folders of real audio built in tmp_path."""

import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from devicepool.audio import read_audio_file
from devicepool.datasets import (
    load_audio_folder,
    load_mobiphone,
    load_wspire,
    split_utterances,
)
from devicepool.datasets._devices import _mic_ir
from devicepool.datasets.corpus import _trim_silence

SR = 16000


def _digits(shared_data, speaker, n, start=0):
    """``n`` real FSDD recordings of ``speaker`` at 16 kHz."""
    folder = shared_data / "fsdd" / "recordings"
    out = []
    for k in range(n):
        digit, take = (start + k) % 10, (start + k) // 10
        x, _ = read_audio_file(folder / f"{digit}_{speaker}_{take}.wav", SR)
        out.append(_trim_silence(x, SR, -40.0))  # FSDD files start and end with silence
    return out


def _colour(x, mic):
    """Record real speech through a measured microphone response (shipped MicIRP subset)."""
    return np.convolve(x, _mic_ir(mic, SR))[: len(x)]


PHONES = {"HTC desire c": "Toshiba_BK5", "LG GS290": "IR_AKGD12", "Nokia N70": "Sony_C37Fet"}
SPEAKERS = {"speaker1": "george", "speaker2": "jackson", "speaker3": "lucas"}


def _write_mobiphone(root, shared_data, n_utt=4, phones=PHONES, speakers=SPEAKERS):
    """MOBIPHONE-like folder: per (phone, speaker) one file of ``n_utt`` utterances.

    Each utterance is two real digits with a short (60 ms) pause inside; utterances are
    separated by 0.5-0.9 s pauses. Returns {(phone, speaker): [(start, stop), ...]}.
    """
    rng = np.random.default_rng(1)
    truth = {}
    for spk, fsdd in speakers.items():
        digits = _digits(shared_data, fsdd, 2 * n_utt)
        utts = [np.concatenate([digits[2 * i], np.zeros(int(0.06 * SR)), digits[2 * i + 1]]) for i in range(n_utt)]
        gaps = [rng.uniform(0.5, 0.9) for _ in range(n_utt - 1)]
        for phone, mic in phones.items():
            parts, bounds, pos = [np.zeros(int(0.4 * SR))], [], int(0.4 * SR)
            for i, u in enumerate(utts):
                parts.append(u)
                bounds.append((pos, pos + len(u)))
                pos += len(u)
                if i < n_utt - 1:
                    g = np.zeros(int(gaps[i] * SR))
                    parts.append(g)
                    pos += len(g)
            parts.append(np.zeros(int(0.4 * SR)))
            x = _colour(np.concatenate(parts), mic)
            x = 0.5 * x / np.abs(x).max() + 10 ** (-65 / 20) * rng.standard_normal(len(x))
            os.makedirs(root / phone, exist_ok=True)
            sf.write(root / phone / f"{spk}.wav", x, SR, subtype="PCM_16")
            truth[(phone, spk)] = bounds
    return truth


@pytest.fixture(scope="module")
def mobiphone_root(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("mobiphone")
    truth = _write_mobiphone(root, shared_data)
    return root, truth


def test_mobiphone_splits_real_speech(mobiphone_root):
    root, truth = mobiphone_root
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load_mobiphone(root, n_utterances_per_file=4)
    assert len(b.data) == 3 * 3 * 4
    assert b.devices == sorted(PHONES)
    assert set(b.groups) == set(SPEAKERS)
    assert set(b.mode) == {"neutral"}
    assert b.sample_rate == SR
    for x in b.data:
        assert x.dtype == np.float32 and x.ndim == 1
    # Each segment covers its true utterance, with at most margin + 1 frame extra.
    for (a, z), phone, spk, utt, src in zip(b.segment, b.target, b.groups, b.utterance, b.source_file):
        k = int(utt.split("_u")[1]) - 1
        ta, tz = truth[(phone, spk)][k]
        assert a <= ta + int(0.05 * SR) and z >= tz - int(0.05 * SR), (phone, spk, k)
        assert ta - a < int(0.2 * SR) and z - tz < int(0.2 * SR)
        assert os.path.basename(src) == f"{spk}.wav"
    # Utterance ids are shared by the parallel recordings of every phone.
    for u in np.unique(b.utterance):
        assert sorted(b.target[b.utterance == u]) == sorted(PHONES)
    # Waveforms are the file's samples.
    x, _ = read_audio_file(b.source_file[0], SR)
    a, z = b.segment[0]
    np.testing.assert_allclose(b.data[0], x[a:z].astype(np.float32))


def test_mobiphone_return_X_y_int16_and_unsplit(mobiphone_root):
    root, _ = mobiphone_root
    X, y = load_mobiphone(root, n_utterances_per_file=4, return_X_y=True, dtype=np.int16)
    assert len(X) == len(y) == 36 and X[0].dtype == np.int16
    b = load_mobiphone(root, split=False)
    assert len(b.data) == 9 and all(str(p).endswith(".wav") for p in b.data)
    b = load_mobiphone(root, n_utterances_per_file=4, phones=["LG GS290"])
    assert set(b.target) == {"LG GS290"} and len(b.data) == 12


def test_mobiphone_default_ten_utterances(tmp_path, shared_data):
    _write_mobiphone(tmp_path, shared_data, n_utt=10, phones={"LG GS290": "IR_AKGD12"},
                     speakers={"speaker7": "theo"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load_mobiphone(tmp_path)
    assert b.utterance.tolist() == [f"speaker7_u{k:02d}" for k in range(1, 11)]


def test_mobiphone_warns_with_file_name(tmp_path, shared_data):
    _write_mobiphone(tmp_path, shared_data, n_utt=3, phones={"LG GS290": "IR_AKGD12"},
                     speakers={"speaker1": "george"})
    with pytest.warns(UserWarning, match=r"speaker1\.wav.*3 utterances, expected 4"):
        b = load_mobiphone(tmp_path, n_utterances_per_file=4)
    assert len(b.data) == 3


def test_split_uses_longest_pauses():
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(np.arange(8000) * 0.3)
    parts = [np.zeros(8000), tone, np.zeros(int(0.35 * SR)), tone, np.zeros(SR), tone, np.zeros(8000)]
    x = np.concatenate(parts) + 1e-4 * rng.standard_normal(sum(map(len, parts)))
    assert len(split_utterances(x, SR)) == 3
    two = split_utterances(x, SR, 2)  # the 1 s pause separates, the 0.35 s one does not
    assert len(two) == 2 and two[0][1] > 8000 + 16000 + int(0.35 * SR)
    assert split_utterances(np.zeros(SR), SR) == []


def test_mobiphone_errors(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mobiphone(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"empty"):
        load_mobiphone(tmp_path)
    _write_mobiphone(tmp_path, shared_data, n_utt=2, phones={"LG GS290": "IR_AKGD12"},
                     speakers={"speaker1": "george"})
    os.makedirs(tmp_path / "Nokia N70")
    with pytest.raises(ValueError, match=r"Nokia N70.*no file"):
        load_mobiphone(tmp_path, n_utterances_per_file=2)
    (tmp_path / "Nokia N70" / "speaker1.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(ValueError, match=r"Nokia N70.*speaker1\.wav.*unreadable"):
        load_mobiphone(tmp_path, n_utterances_per_file=2)
    os.remove(tmp_path / "Nokia N70" / "speaker1.wav")
    os.rmdir(tmp_path / "Nokia N70")
    (tmp_path / "LG GS290" / "notes.txt").write_text("recording notes")
    with pytest.raises(ValueError, match=r"notes\.txt.*do not match|do not match.*notes\.txt"):
        load_mobiphone(tmp_path, n_utterances_per_file=2)
    b = load_mobiphone(tmp_path, n_utterances_per_file=2, strict=False)
    assert len(b.data) == 2
    sf.write(tmp_path / "LG GS290" / "speaker2.wav", np.zeros(SR), SR)
    with pytest.raises(ValueError, match=r"speaker2\.wav.*no speech"):
        load_mobiphone(tmp_path, n_utterances_per_file=2, strict=False)


WSPIRE_DEVICES = {"Zoom H6": "Sony_C37Fet", "iPhone 7": "IR_OktavaMD57", "Nokia 5.1": "Toshiba_BK5"}


@pytest.fixture(scope="module")
def wspire_root(tmp_path_factory, shared_data):
    """wSPIRE-like folder: real FSDD speech (neutral) and the real whisper recording."""
    root = tmp_path_factory.mktemp("wspire")
    whisper, _ = read_audio_file(shared_data / "whisper_sample" / "sample_whisper.wav", SR)
    pieces = np.array_split(whisper, 4)
    for dev, mic in WSPIRE_DEVICES.items():
        for spk_i, spk in enumerate(["george", "nicolas"]):
            digits = _digits(shared_data, spk, 2)
            for s in range(2):
                for mode, x in (("neutral", digits[s]), ("whisper", pieces[2 * spk_i + s])):
                    folder = root / dev / mode
                    os.makedirs(folder, exist_ok=True)
                    sf.write(folder / f"spk{spk_i + 1:02d}_s{s + 1:02d}.wav", _colour(x, mic), SR)
    return root


def test_wspire_layout(wspire_root):
    b = load_wspire(wspire_root)
    assert len(b.data) == 3 * 2 * 2 * 2
    assert b.devices == sorted(WSPIRE_DEVICES)
    assert set(b.mode) == {"neutral", "whisper"}
    assert set(b.groups) == {"spk01", "spk02"}
    assert set(b.utterance_label) == {"s01", "s02"}
    assert "spk01_s02_whisper" in set(b.utterance)
    for u in np.unique(b.utterance):
        assert sorted(b.target[b.utterance == u]) == sorted(WSPIRE_DEVICES)
    assert b.sample_rate == SR and (b.file_sample_rate == SR).all()
    assert "wSPIRE" in b.DESCR
    for p, t, m in zip(b.data, b.target, b.mode):
        assert os.path.isfile(p) and os.sep + t + os.sep + m + os.sep in p
    X, y = load_wspire(wspire_root, return_X_y=True)
    assert list(X) == list(b.data) and (y == b.target).all()
    w = load_wspire(wspire_root, modes=["whisper"], devices=["iPhone 7"])
    assert set(w.mode) == {"whisper"} and set(w.target) == {"iPhone 7"} and len(w.data) == 4


def test_wspire_data_feeds_filterbank(wspire_root):
    FilterBank = pytest.importorskip("devicepool.features").FilterBank
    b = load_wspire(wspire_root, devices=["Zoom H6"])
    feats = FilterBank().fit_transform(b.data)
    assert len(feats) == len(b.data) and feats[0].shape[1] == 24


def test_folder_mode_alias_extra_fields_and_parallel_warning(tmp_path, shared_data):
    digits = _digits(shared_data, "yweweler", 2)
    for dev in ["A", "B"]:
        for mode in ["Normal", "Whispered"]:
            os.makedirs(tmp_path / dev / mode)
            for take in ["1", "2"]:
                sf.write(tmp_path / dev / mode / f"yw_s1_{take}.wav", digits[int(take) - 1], SR)
    b = load_audio_folder(tmp_path, "{device}/{mode}/{speaker}_{utterance}_{take}.wav")
    assert set(b.mode) == {"neutral", "whisper"}
    assert sorted(set(b.take)) == ["1", "2"]
    assert "yw_s1_2_whisper" in set(b.utterance)
    os.remove(tmp_path / "B" / "Normal" / "yw_s1_2.wav")
    with pytest.warns(UserWarning, match=r"not fully parallel.*'B' lacks 1"):
        load_audio_folder(tmp_path, "{device}/{mode}/{speaker}_{utterance}_{take}.wav")


def test_folder_errors(tmp_path, shared_data):
    x = _digits(shared_data, "theo", 1)[0]
    with pytest.raises(FileNotFoundError, match="missing_root"):
        load_audio_folder(tmp_path / "missing_root")
    with pytest.raises(TypeError):
        load_audio_folder(42)
    with pytest.raises(ValueError, match="device"):
        load_audio_folder(tmp_path, "{speaker}/{utterance}.wav")
    with pytest.raises(ValueError, match="adjacent"):
        load_audio_folder(tmp_path, "{device}/{speaker}{utterance}.wav")
    with pytest.raises(ValueError, match="empty"):
        load_audio_folder(tmp_path)
    os.makedirs(tmp_path / "dev1" / "shout")
    sf.write(tmp_path / "dev1" / "shout" / "a_1.wav", x, SR)
    with pytest.raises(ValueError, match=r"shout.*a_1\.wav.*unknown speaking mode|a_1\.wav.*unknown speaking mode 'shout'"):
        load_audio_folder(tmp_path, "{device}/{mode}/{speaker}_{utterance}.wav")
    os.remove(tmp_path / "dev1" / "shout" / "a_1.wav")
    os.rmdir(tmp_path / "dev1" / "shout")
    sf.write(tmp_path / "dev1" / "a_1.wav", x, SR)
    sf.write(tmp_path / "dev1" / "a_2.wav", x[::2], 8000)
    with pytest.raises(ValueError, match=r"different sample rates.*a_1\.wav.*a_2\.wav|different sample rates.*a_2\.wav.*a_1\.wav"):
        load_audio_folder(tmp_path)
    b = load_audio_folder(tmp_path, sample_rate=SR)
    assert b.sample_rate == SR and sorted(b.file_sample_rate) == [8000, SR]
    with pytest.raises(ValueError, match=r"\['dev2'\] have no file"):
        load_audio_folder(tmp_path, sample_rate=SR, devices=["dev1", "dev2"])
    with pytest.raises(ValueError, match="no file .* matches"):
        load_audio_folder(tmp_path, "{device}/{speaker}-{utterance}.flac", strict=False)


def test_a_pattern_without_speakers_warns_and_the_protocol_refuses_it(tmp_path):
    import soundfile as sf

    from devicepool.datasets import load_audio_folder
    from devicepool.protocol import run_protocol

    rng = np.random.default_rng(0)
    for dev in ("a", "b"):
        for utt in range(4):
            path = tmp_path / dev / f"u{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(8000), 16000)
    with pytest.warns(UserWarning, match=r"no \{speaker\} field: the speakers are unknown"):
        b = load_audio_folder(tmp_path, pattern="{device}/{utterance}.wav")
    assert b.speakers_known is False
    assert "speakers: unknown (no {speaker} field; `groups` holds 4 utterance ids)" in b.DESCR
    with pytest.raises(ValueError, match="speakers are unknown.*allow_unknown_speakers=True"):
        run_protocol(b, models=["da_cnn"], progress=False, report=False)
    named = load_audio_folder(tmp_path, pattern="{device}/{speaker}.wav")
    assert named.speakers_known is True and "speakers: 4" in named.DESCR


def test_corpus_is_frozen_validated_and_reads_like_a_bunch(tmp_path, shared_data):
    import dataclasses
    import pickle

    from sklearn.utils import Bunch

    from devicepool.datasets import Corpus

    digits = _digits(shared_data, "yweweler", 1)
    for dev in ["A", "B"]:
        os.makedirs(tmp_path / dev)
        sf.write(tmp_path / dev / "yw_s1_t1.wav", digits[0], SR)
    c = load_audio_folder(tmp_path, "{device}/{speaker}_{utterance}_{take}.wav")
    assert isinstance(c, Corpus) and len(c) == 2
    # a Bunch's ways of reading it still work, extra fields included
    assert c["target"].tolist() == c.target.tolist() == ["A", "B"] and c.devices == ["A", "B"]
    assert "data" in c and "take" in c and "nope" not in c and c.take.tolist() == ["t1", "t1"]
    assert set(c.keys()) >= {"data", "target", "groups", "mode", "utterance", "sample_rate", "devices",
                             "target_names", "DESCR", "speakers_known", "take", "file_sample_rate"}
    with pytest.raises(KeyError):
        c["nope"]
    assert not hasattr(c, "nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.target = None
    again = pickle.loads(pickle.dumps(c))
    assert again.take.tolist() == ["t1", "t1"] and again.sample_rate == SR
    # users' data: a Bunch, a dict or any object with the fields
    b = Corpus.from_bunch(Bunch(data=[np.zeros(8)] * 3, target=["x", "y", "x"], groups=[1, 2, 3], sid=[7, 8, 9]))
    assert b.mode.tolist() == ["neutral"] * 3 and b.groups.tolist() == ["1", "2", "3"] and b.sid == [7, 8, 9]
    assert b.speakers_known is True and b.sample_rate is None and Corpus.from_bunch(b) is b
    rate = Corpus.from_bunch({"data": [1], "target": ["x"], "groups": [1], "sample_rate": np.int64(8000)}).sample_rate
    assert type(rate) is int and rate == 8000  # a plain int: the protocol's fingerprint reads its repr
    with pytest.raises(TypeError, match="missing 'groups'"):
        Corpus.from_bunch({"data": [1], "target": ["x"]})
    with pytest.raises(ValueError, match=r"Corpus.groups must have one entry per recording of data \(3\)"):
        Corpus.from_bunch({"data": [1, 2, 3], "target": ["x"] * 3, "groups": [1, 2]})
    with pytest.raises(ValueError, match="Corpus.mode values must be 'neutral' or 'whisper', got \\['loud'\\]"):
        Corpus.from_bunch({"data": [1], "target": ["x"], "groups": [1], "mode": ["loud"]})
