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
    SIBLING_MICROPHONES,
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
    assert len(stems) == 25 and not stems & set(DEFAULT_MICROPHONES + SIBLING_MICROPHONES)
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
    emb, bundle = read_bundle()  # format "devicepool.DeviceEmbedding" 1, of devicepool 0.5
    assert json.loads(bundle["recipe"]) == manifest["recipe"]
    assert emb.network_.backbone == manifest["recipe"]["backbone"]


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


def test_the_shipped_embedding_never_heard_the_evaluation_microphones():
    recipe = json.loads(read_bundle()[1]["recipe"])
    assert recipe["microphones"] and not set(recipe["microphones"]) & set(DEFAULT_MICROPHONES + SIBLING_MICROPHONES)
    assert not set(recipe["real_speakers"]) & {"george", "lucas", "yweweler"}


# --------------------------------------------------------------------------- back ends

def _clustered(n_devices, per_device, n_speakers, seed, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_devices, dim)) * 2
    dev = np.repeat(np.arange(n_devices), per_device)
    spk = np.tile(np.arange(per_device) % n_speakers, n_devices)
    return centres[dev] + rng.normal(size=(len(dev), dim)), dev, spk


def test_snorm_scorer_round_trips_and_needs_a_background():
    from devicepool.forensic import DeviceLR

    E, d, s = _clustered(20, 8, 4, 0)
    Eb, db, _ = _clustered(40, 6, 3, 1)
    with pytest.raises(ValueError, match="needs X_background"):
        DeviceLR(scoring="snorm").fit(E, d, s)
    lr = DeviceLR(scoring="snorm", random_state=0).fit(E, d, s, X_background=Eb, devices_background=db)
    again = DeviceLR.from_payload(lr.to_payload())
    np.testing.assert_array_equal(again.predict_llr(E[:4], E[4:8]), lr.predict_llr(E[:4], E[4:8]))
    assert lr.predict_llr(E[:1], E[1:4])[0] > 0 > lr.predict_llr(E[:1], E[9:12])[0]


def test_cross_validated_llrs_hold_out_speakers():
    from devicepool.forensic import DeviceLR, cllr, cross_validated_llrs

    E, d, s = _clustered(10, 8, 4, 2)
    settings = DeviceLR(scoring="cosine", random_state=0)
    llr, y = cross_validated_llrs(settings, E, d, s, n_splits=2)
    assert set(np.unique(y)) == {0, 1} and np.isfinite(llr).all()
    fitted = DeviceLR(scoring="cosine", random_state=0).fit(E, d, s)
    resub = cllr(fitted.calibrator_.transform(fitted.calibration_scores_), fitted.calibration_labels_)
    assert cllr(llr, y) >= resub - 0.05  # held-out speakers are not easier than the fitted ones
    with pytest.raises(ValueError, match="at least 4 speakers"):
        cross_validated_llrs(settings, E, d, s % 3)


def test_enrolled_devices_answer_unknown_for_devices_not_enrolled(small_corpus):
    from devicepool.forensic import UNKNOWN, EnrolledDevices

    c = small_corpus
    dev, spk = np.asarray(c.target), np.asarray(c.groups)
    known = np.isin(dev, c.devices[:2])
    enrol = known & (spk == "spk01")
    model = EnrolledDevices().fit(c.data[enrol], dev[enrol])
    assert list(model.classes_) == sorted(c.devices[:2])
    test_known = known & (spk == "spk03")
    assert np.mean(model.predict(c.data[test_known]) == dev[test_known]) >= 0.75
    unknown = ~known & (spk == "spk03")
    assert np.mean(model.predict(c.data[unknown]) == UNKNOWN) >= 0.75
    L = model.decision_function(c.data[unknown])
    assert L.shape == (unknown.sum(), 2) and (L <= model.lr_.llr_bounds_[1]).all()
    model.calibrate(c.data[~known & (spk == "spk02")], far=0.0)
    assert model.far_ == 0.0
    with pytest.raises(ValueError, match="far must be"):
        model.calibrate(c.data[unknown], far=1.5)


def test_enrolled_devices_on_embeddings_and_enrolment_references(small_corpus):
    from devicepool.estimators import DeviceEmbedding
    from devicepool.forensic import DeviceLR, EnrolledDevices, enrolment_references

    c = small_corpus
    dev, spk = np.asarray(c.target), np.asarray(c.groups)
    ref = enrolment_references(dev, spk, 2)  # 2 per device, the speakers taken in turn
    assert all(len(set(spk[ref][dev[ref] == d])) == min(2, len(set(spk))) for d in set(dev))
    assert np.array_equal(ref, np.sort(ref)) and len(ref) == 2 * len(set(dev))
    E = DeviceEmbedding().transform(list(c.data))
    on_recordings = EnrolledDevices().fit(c.data[ref], dev[ref])
    on_embeddings = EnrolledDevices(lr=DeviceLR.pretrained(embedder=None)).fit(E[ref], dev[ref])
    np.testing.assert_allclose(on_embeddings.decision_function(E[:5]),
                               on_recordings.decision_function(c.data[:5]), atol=1e-5)


def test_evaluate_pretrained_on_a_small_corpus(small_corpus):
    from devicepool.forensic import DeviceLR
    from devicepool.protocol import forensic_splits
    from devicepool.protocol.pretrained_eval import evaluate_pretrained

    c = small_corpus
    E = DeviceEmbedding.pretrained().transform(c.data)
    splits = forensic_splits(c.target, c.groups, n_splits=2, random_state=0)
    res = evaluate_pretrained(c, E, DeviceLR.pretrained(embedder=None), splits)
    assert len(res["folds"]) == 2 and len(res["closed_set_full"]) == 2
    eer, _ = res["summary"]["neutral.eer"]
    assert 0 <= eer <= 0.25
    assert 0 <= res["summary"]["closed_set_enrol"][0] <= 1
    assert "whisper" not in res["folds"][0]  # the corpus is neutral only


def test_the_few_shot_model_is_registered_and_learns_from_a_few_recordings(small_corpus):
    from devicepool.estimators import make_pretrained_lr
    from devicepool.protocol import get_model, registered_models

    assert "pretrained_lr" in registered_models()
    c = small_corpus
    spk = np.asarray(c.groups)
    train = np.isin(spk, ["spk01", "spk02"])
    pipe = get_model("pretrained_lr").make_pipeline(c.sample_rate)
    pipe.fit(c.data[train], c.target[train])
    assert pipe.score(c.data[~train], c.target[~train]) >= 0.9
    assert make_pretrained_lr(C=1.0).named_steps["clf"].C == 1.0
