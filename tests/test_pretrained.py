"""The device population, the embedding network, the shipped pretrained embedding and its uses."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from devicepool.datasets import (
    DEFAULT_DEVICES,
    DEFAULT_MICROPHONES,
    DeviceSpec,
    microphone_files,
    random_device,
    random_devices,
)
from devicepool.datasets._devices import apply_device, eq_response
from devicepool.estimators.embedding import PRETRAINED_PATH, DeviceEmbedding, read_bundle
from devicepool.models.embedding_net import AAMSoftmax, DeviceEmbeddingNet

MICS = ["Toshiba_BK5", "Sony_C37Fet", "IR_AKGD12"]


# --------------------------------------------------------------------------- population

def test_random_devices_are_reproducible_extend_and_are_disjoint_by_start():
    a = random_devices(5, 3, microphones=MICS)
    b = random_devices(8, 3, microphones=MICS)
    assert a == b[:5]
    assert len({d.name for d in b}) == 8
    later = random_devices(5, 3, microphones=MICS, start=5)
    assert later[:3] == b[5:]
    assert random_device((3, 2), MICS) == a[2]
    assert random_devices(5, 4, microphones=MICS) != a


def test_random_devices_draw_every_part():
    devs = random_devices(300, 0, microphones=MICS)
    assert {d.mic for d in devs} == set(MICS)
    assert len({d.codec for d in devs}) >= 10
    assert any(d.agc is not None for d in devs) and any(d.agc is None for d in devs)
    assert any(d.hum_dbfs is not None for d in devs) and any(d.soft_clip for d in devs)
    assert all(1 <= len(d.eq) <= 4 for d in devs)
    assert {d.codec_rate for d in devs if d.codec in ("gsm610", "ulaw", "alaw")} == {8000}


def test_random_devices_refuse_an_empty_microphone_list_and_bad_counts():
    with pytest.raises(ValueError, match="pass microphones="):
        random_devices(3, 0)
    with pytest.raises(ValueError, match="'n' parameter"):
        random_devices(0, 0, microphones=MICS)


def test_microphone_files_leave_out_the_default_corpus(shared_data):
    files = microphone_files(shared_data / "micirp")
    stems = {Path(f).stem for f in files}
    assert stems and not stems & set(DEFAULT_MICROPHONES)
    assert set(DEFAULT_MICROPHONES) == {d.mic for d in DEFAULT_DEVICES} and len(DEFAULT_MICROPHONES) == 12
    with pytest.raises(FileNotFoundError):
        microphone_files(shared_data / "no-such-folder")


def test_a_simulated_device_records_and_its_mic_can_be_a_path(tmp_path):
    import soundfile as sf

    from devicepool.datasets._devices import MIC_DIR

    h, rate = sf.read(MIC_DIR / "Toshiba_BK5.wav")
    sf.write(tmp_path / "mymic.wav", h, rate, subtype="DOUBLE")
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(16000)
    by_name = apply_device(x, DeviceSpec("a", "Toshiba_BK5"), 16000, np.random.default_rng(1))
    by_path = apply_device(x, DeviceSpec("a", str(tmp_path / "mymic.wav")), 16000, np.random.default_rng(1))
    np.testing.assert_array_equal(by_name, by_path)
    for d in random_devices(20, 1, microphones=MICS):
        y = apply_device(x, d, 16000, np.random.default_rng(2))
        assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_eq_sections_have_their_gains():
    sr = 16000
    f = np.array([100.0, 1000.0, 7900.0])
    peak = 20 * np.log10(np.abs(eq_response([("peak", 1000.0, 6.0, 2.0)], f, sr)))
    np.testing.assert_allclose(peak, [0.0, 6.0, 0.0], atol=0.1)
    low = 20 * np.log10(np.abs(eq_response([("lowshelf", 300.0, -6.0, 0.707)], [20.0, 7000.0], sr)))
    np.testing.assert_allclose(low, [-6.0, 0.0], atol=0.2)
    high = 20 * np.log10(np.abs(eq_response([("highshelf", 3000.0, 8.0, 0.707)], [50.0, 7900.0], sr)))
    np.testing.assert_allclose(high, [0.0, 8.0], atol=0.3)


def test_device_spec_checks_its_eq_and_agc():
    from devicepool._validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'eq' section"):
        DeviceSpec("x", "Toshiba_BK5", eq=(("notch", 1000.0, 3.0, 1.0),))
    with pytest.raises(InvalidParameterError, match="'eq' section"):
        DeviceSpec("x", "Toshiba_BK5", eq=(("peak", -5.0, 3.0, 1.0),))
    with pytest.raises(InvalidParameterError, match="agc"):
        DeviceSpec("x", "Toshiba_BK5", agc=5.0)


def test_agc_levels_quiet_and_loud_speech_toward_its_target():
    t = np.arange(48000) / 16000
    tone = np.sin(2 * np.pi * 440 * t)

    def level(gain_db, agc):
        spec = DeviceSpec("x", "Sony_C37Fet", gain_db=gain_db, agc=agc, noise_dbfs=-120.0)
        y = apply_device(0.05 * tone, spec, 16000, np.random.default_rng(0), variability=0.0)
        return 20 * np.log10(np.sqrt(np.mean(y[32000:] ** 2)))  # the last second

    assert abs(level(-10, None) - level(10, None)) > 19  # without AGC the gain shows
    assert abs(level(-10, -20.0) - level(10, -20.0)) < 3  # with it, both end near -20 dBFS
    assert abs(level(-10, -20.0) + 20) < 3


def test_default_devices_are_unchanged_by_the_new_parts():
    """eq=() and agc=None leave the chain as 0.4 had it, and its description without them."""
    d = DEFAULT_DEVICES[1]
    assert "eq" not in d.as_dict() and "agc" not in d.as_dict()
    x = 0.1 * np.random.default_rng(0).standard_normal(8000)
    a = apply_device(x, d, 16000, np.random.default_rng(5))
    b = apply_device(x, DeviceSpec(**{**d.__dict__}), 16000, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- network

@pytest.mark.parametrize("backbone", ["ecapa", "da_cnn"])
def test_padding_never_changes_an_embedding(backbone):
    torch.manual_seed(0)
    net = DeviceEmbeddingNet(24, backbone=backbone, channels=32, embedding_dim=16).eval()
    x = torch.randn(3, 61, 24)
    lengths = torch.tensor([61, 40, 17])
    with torch.no_grad():
        batch = net(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = net(x[i:i + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(batch[i], alone[0], atol=1e-5, rtol=1e-5)


def test_an_overall_gain_does_not_change_an_embedding():
    torch.manual_seed(0)
    net = DeviceEmbeddingNet(24, channels=32, embedding_dim=16).eval()
    x = torch.randn(2, 50, 24)
    lengths = torch.tensor([50, 50])
    with torch.no_grad():
        torch.testing.assert_close(net(x, lengths), net(x + 3.7, lengths), atol=1e-4, rtol=1e-4)


def test_aam_softmax_margin():
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.3, scale=10.0)
    emb = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 3])
    plain = head.logits(emb)
    with_margin = head.logits(emb, y)
    rows = torch.arange(4)
    assert (with_margin[rows, y] < plain[rows, y]).all()  # the target is pushed away
    mask = torch.ones_like(plain, dtype=bool)
    mask[rows, y] = False
    torch.testing.assert_close(with_margin[mask], plain[mask])
    torch.testing.assert_close(head(emb, y, margin=0.0), torch.nn.functional.cross_entropy(plain, y))


# --------------------------------------------------------------------------- the shipped bundle

def test_the_shipped_bundle_is_the_one_its_manifest_names():
    manifest = json.loads((PRETRAINED_PATH.parent / "MANIFEST.json").read_text())
    digest = hashlib.sha256(PRETRAINED_PATH.read_bytes()).hexdigest()
    assert digest == manifest["sha256"]
    bundle = read_bundle()
    assert json.loads(bundle["recipe"]) == manifest["recipe"]
    assert bundle["network"]["backbone"] == manifest["recipe"]["backbone"]


def test_pretrained_embedding_loads_offline_and_embeds_waveforms_and_files(tmp_path):
    import soundfile as sf

    emb = DeviceEmbedding.pretrained()
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n) for n in (16000, 24000, 9000)]
    sf.write(tmp_path / "a.wav", waves[1], 16000)
    sf.write(tmp_path / "b8k.wav", waves[1][::2], 8000)
    E = emb.transform(waves + [str(tmp_path / "a.wav")])
    assert E.shape == (4, emb.embedding_dim_) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(E[3], E[1], atol=1e-4)  # the file holds the same samples (16 bits)
    alone = np.concatenate([emb.transform([w]) for w in waves])
    np.testing.assert_allclose(E[:3], alone, atol=1e-5)  # batching and padding change nothing
    assert emb.transform([str(tmp_path / "b8k.wav")]).shape == (1, emb.embedding_dim_)
    assert DeviceEmbedding(sample_rate=8000).transform([waves[1][::2]]).shape == (1, emb.embedding_dim_)


def test_pretrained_embedding_errors_name_the_recording(tmp_path):
    emb = DeviceEmbedding.pretrained()
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        emb.transform([str(tmp_path / "nope.wav")])
    with pytest.raises(ValueError, match=r"utterance 1"):
        emb.transform([np.zeros(16000), np.array([])])
    with pytest.raises(FileNotFoundError, match="no embedding bundle"):
        DeviceEmbedding(weights=tmp_path / "missing.pt").fit()
    (tmp_path / "text.pt").write_text("not a bundle")
    with pytest.raises(ValueError, match="not a devicepool embedding bundle"):
        DeviceEmbedding(weights=tmp_path / "text.pt").fit()


@pytest.fixture(scope="module")
def small_corpus():
    from devicepool import make_device_corpus

    return make_device_corpus(n_devices=4, n_speakers=4, n_utterances=2, modes=("neutral",), random_state=5)


def test_pretrained_device_lr_separates_devices_it_never_heard(small_corpus):
    from devicepool.forensic import DeviceLR

    lr = DeviceLR.pretrained()
    c = small_corpus
    dev, spk = np.asarray(c.target), np.asarray(c.groups)
    d0 = np.flatnonzero(dev == c.devices[0])
    q = [i for i in d0 if spk[i] == "spk01"]
    refs_same = [i for i in d0 if spk[i] != "spk01"][:3]
    refs_other = [i for i in np.flatnonzero(dev == c.devices[2]) if spk[i] != "spk01"][:3]
    same = lr.predict_llr(c.data[q], c.data[refs_same])
    other = lr.predict_llr(c.data[q], c.data[refs_other])
    assert (same > 0).all() and (other < 0).all()
    low, high = lr.llr_bounds_
    assert low <= other.min() and same.max() <= high


def test_pretrained_few_shot_by_enrolment_on_unseen_devices(small_corpus):
    """Nearest enrolment (one recording per device, by another speaker) names the device."""
    c = small_corpus
    E = DeviceEmbedding.pretrained().transform(c.data)
    dev, spk = np.asarray(c.target), np.asarray(c.groups)
    enrol = np.array([np.flatnonzero((dev == d) & (spk == "spk01"))[0] for d in c.devices])
    test = np.flatnonzero(spk != "spk01")
    pred = np.asarray(c.devices)[(E[test] @ E[enrol].T).argmax(1)]
    assert np.mean(pred == dev[test]) >= 0.9
