"""Forensic comparison on the command line (issue 12, item 4): the payloads of DeviceLR and
OpenSetClassifier, the verbal scale, ``devicepool calibrate``, ``devicepool compare`` and
``devicepool evaluate --forensic``."""

import copy
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FOLDER_PATTERN, write_folder_corpus
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from devicepool import persistence, protocol
from devicepool.cli import main
from devicepool.cli._forensic_commands import CAUTION, H1, H2
from devicepool.datasets import make_device_corpus
from devicepool.forensic import (
    CosineScorer,
    DeviceLR,
    OpenSetClassifier,
    verbal_equivalent,
)

PATTERN = FOLDER_PATTERN


def write_corpus(root, **spec):
    """The embedded corpus as WAV files in the folder layout ``PATTERN``."""
    return write_folder_corpus(root, make_device_corpus(random_state=0, **spec))


def corpus_args(root):
    return ["--corpus", "folder", "--root", str(root), "--pattern", PATTERN]


def one_line_error(err):
    """The one error line; a wrong flag's error comes after its command's usage."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if lines and lines[0].startswith("usage: devicepool "):
        command = lines[0].split()[2]
        lines = [ln for ln in lines[1:] if not ln.startswith(" ")]
        assert lines and lines[-1].endswith(f"(see 'devicepool {command} --help')"), err
    assert len(lines) == 1 and lines[0].startswith("devicepool: error:"), err
    return lines[0]


# --------------------------------------------------------------------------- verbal scale


@pytest.mark.parametrize("llr, words", [
    (0.0, "no support for either hypothesis"),
    (-0.0, "no support for either hypothesis"),
    (1e-300, "weak support for H1 (same device)"),
    (0.999999, "weak support for H1 (same device)"),
    (1.0, "moderate support for H1 (same device)"),
    (1.999999, "moderate support for H1 (same device)"),
    (2.0, "moderately strong support for H1 (same device)"),
    (3.0, "strong support for H1 (same device)"),
    (3.999999, "strong support for H1 (same device)"),
    (4.0, "very strong support for H1 (same device)"),
    (4.999999, "very strong support for H1 (same device)"),
    (5.0, "extremely strong support for H1 (same device)"),
    (12.0, "extremely strong support for H1 (same device)"),
    (math.inf, "extremely strong support for H1 (same device)"),
    (-1e-300, "weak support for H2 (another device)"),
    (-0.999999, "weak support for H2 (another device)"),
    (-1.0, "moderate support for H2 (another device)"),
    (-2.0, "moderately strong support for H2 (another device)"),
    (-3.0, "strong support for H2 (another device)"),
    (-4.0, "very strong support for H2 (another device)"),
    (-5.0, "extremely strong support for H2 (another device)"),
    (-math.inf, "extremely strong support for H2 (another device)"),
    (np.float32(2.5), "moderately strong support for H1 (same device)"),
    (3, "strong support for H1 (same device)"),
])
def test_verbal_equivalent_at_the_boundaries(llr, words):
    assert verbal_equivalent(llr) == words


def test_verbal_equivalent_is_symmetric_and_rejects_non_numbers():
    for v in (0.3, 1.7, 2.2, 3.5, 4.1, 8.0):
        assert verbal_equivalent(v).replace("H1 (same device)", "X") == \
            verbal_equivalent(-v).replace("H2 (another device)", "X")
    with pytest.raises(ValueError, match="NaN"):
        verbal_equivalent(math.nan)
    for bad in ("1.0", None, True, [1.0]):
        with pytest.raises(TypeError, match="real number"):
            verbal_equivalent(bad)


# --------------------------------------------------------------------------- payloads


def device_embeddings(n_devices, seed, dim=12):
    rng = np.random.default_rng(seed)
    device_means = rng.normal(size=(n_devices, dim)) * 1.5
    speaker_means = rng.normal(size=(5, dim)) * 0.5
    dev = np.repeat(np.arange(n_devices), 15)
    spk = np.tile(np.repeat(np.arange(5), 3), n_devices)
    E = device_means[dev] + speaker_means[spk] + rng.normal(size=(len(dev), dim))
    return E, np.array([f"dev{seed}-{d}" for d in dev]), spk


def _to_tensors(obj):
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    return torch.from_numpy(obj) if isinstance(obj, np.ndarray) else obj


def through_torch(payload):
    """What the model file does: tensors, torch.save, torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(_to_tensors(payload), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("scoring", ["plda", "cosine"])
@pytest.mark.parametrize("calibration", ["logistic", "isotonic"])
@pytest.mark.parametrize("lda_dim", [None, 3])
def test_device_lr_payload_round_trip_gives_the_same_llrs(scoring, calibration, lda_dim, tmp_path):
    E, d, s = device_embeddings(6, 0)
    Et, dt, st = device_embeddings(4, 1)
    model = DeviceLR(scoring=scoring, calibration=calibration, lda_dim=lda_dim,
                     random_state=0).fit(E, d, s)
    payload = model.to_payload()
    persistence.dump(model, tmp_path / "lr.pt")
    for restored in (DeviceLR.from_payload(through_torch(payload)), persistence.load(tmp_path / "lr.pt")):
        np.testing.assert_array_equal(restored.predict_llr(Et[:10], Et[10:15]),
                                      model.predict_llr(Et[:10], Et[10:15]))
        np.testing.assert_array_equal(restored.pair_llrs(Et, dt, st)[0], model.pair_llrs(Et, dt, st)[0])
        assert (restored.n_same_pairs_, restored.n_diff_pairs_) == (model.n_same_pairs_, model.n_diff_pairs_)
        np.testing.assert_array_equal(restored.calibration_scores_, model.calibration_scores_)
        assert restored.get_params() == model.get_params()
    again = DeviceLR.from_payload(through_torch(DeviceLR.from_payload(payload).to_payload()))
    np.testing.assert_array_equal(again.predict_llr(Et[:5], Et[5:8]), model.predict_llr(Et[:5], Et[5:8]))


def test_device_lr_payload_is_the_persistence_format_and_keeps_the_embedder_out():
    """One format: the payload is what ``persistence.dump`` writes (JSON is no longer a
    goal: arrays are tensors), a node per estimator, the embedder left out."""
    E, d, s = device_embeddings(4, 0)
    model = DeviceLR(embedder=None, scoring=CosineScorer(lda_dim=2),
                     random_state=np.random.default_rng(0)).fit(E, d, s)
    model.embedder = FunctionTransformer()  # what the payload leaves out
    payload = model.to_payload()
    assert payload["format"] == persistence.FORMAT and payload["format_version"] == persistence.FORMAT_VERSION
    node = payload["object"]
    assert node["class"] == "devicepool.forensic.DeviceLR" and node["params"]["embedder"] is None
    assert node["params"]["scoring"]["class"] == "devicepool.forensic.CosineScorer"
    assert "random_state" not in node["params"]  # a Generator only steers fitting: left out
    assert node["params"]["bounds"] == "elub" and len(node["fitted"]["llr_bounds_"]["__tuple__"]) == 2
    lda = node["fitted"]["scorer_"]["fitted"]["lda_"]
    assert lda["class"] == "sklearn.discriminant_analysis.LinearDiscriminantAnalysis"
    assert model.embedder is not None  # to_payload left the model alone
    restored = DeviceLR.from_payload(through_torch(payload), embedder=model.embedder)
    assert restored.embedder is model.embedder and restored.random_state is None
    assert restored.get_params()["scoring"].get_params() == {"lda_dim": 2}
    np.testing.assert_array_equal(restored.score(E[:3], E[3:6]), model.score(E[:3], E[3:6]))


def test_device_lr_payload_errors():
    E, d, s = device_embeddings(4, 0)
    with pytest.raises(Exception, match="calibrator_|not fitted"):
        DeviceLR().to_payload()

    class MyScorer(CosineScorer):
        pass

    with pytest.raises(ValueError, match="MyScorer.*ALLOWED"):
        DeviceLR(scoring=MyScorer(), random_state=0).fit(E, d, s).to_payload()
    payload = DeviceLR(random_state=0).fit(E, d, s).to_payload()
    with pytest.raises(ValueError, match="DeviceLR payload is not a devicepool model file"):
        DeviceLR.from_payload({"format": "other"})
    with pytest.raises(ValueError, match="update devicepool"):
        DeviceLR.from_payload(dict(payload, format_version=persistence.FORMAT_VERSION + 1))
    damaged = copy.deepcopy(payload)
    del damaged["object"]["fitted"]["scorer_"]["fitted"]
    with pytest.raises(ValueError, match=r"damaged model file: object.scorer_ \(PLDAScorer\)"):
        DeviceLR.from_payload(damaged)
    foreign = copy.deepcopy(payload)
    foreign["object"]["fitted"]["calibrator_"]["class"] = "builtins.eval"
    with pytest.raises(ValueError, match="unknown class 'builtins.eval'"):
        DeviceLR.from_payload(foreign)
    with pytest.raises(ValueError, match="not a DeviceLR payload: it holds a CosineScorer"):
        DeviceLR.from_payload(persistence.to_payload(CosineScorer().fit(E, d)))


@pytest.mark.parametrize("score", ["max_proba", "margin"])
def test_open_set_payload_round_trip(score):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3, 1, (50, 2)), rng.normal(3, 1, (50, 2))]
    clf = LogisticRegression().fit(X, np.repeat(["a", "b"], 50))
    model = OpenSetClassifier(clf, far=0.1, score=score).calibrate(X, rng.normal(0, 1, (40, 2)))
    restored = OpenSetClassifier.from_payload(through_torch(model.to_payload()), clf)
    for attr in ("threshold_", "far_", "frr_", "n_known_", "n_unknown_", "far", "score"):
        assert getattr(restored, attr) == getattr(model, attr), attr
    probe = rng.normal(0, 2, (30, 2))
    assert restored.predict(probe).tolist() == model.predict(probe).tolist()
    assert model.classifier is clf  # to_payload left the model alone
    with pytest.raises(ValueError, match="not a devicepool model file"):
        OpenSetClassifier.from_payload({}, clf)
    with pytest.raises(Exception, match="no threshold"):
        OpenSetClassifier(clf).to_payload()


# --------------------------------------------------------------------------- payloads of 0.4-0.5

LEGACY = Path(__file__).parent / "data" / "legacy"


def test_device_lr_payloads_of_earlier_versions_give_the_same_llrs():
    """``DeviceLR.to_payload()`` of devicepool 0.5 (format 2; and 1, of 0.4, without bounds;
    and as JSON lists), with the LLRs 0.5 gave after reading them back (to round-off: they were made on another CPU)."""
    stored = torch.load(LEGACY / "device_lr.pt", weights_only=True)
    Et = stored["E"].numpy()
    _, dt, st = device_embeddings(4, 1)
    assert len(stored["payloads"]) == 6
    for name, payload in stored["payloads"].items():
        lr = DeviceLR.from_payload(payload)
        np.testing.assert_allclose(lr.predict_llr(Et[:10], Et[10:15]), stored["llr"][name].numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(lr.pair_llrs(Et, dt, st)[0], stored["pair_llr"][name].numpy(), rtol=1e-12, atol=1e-12)
        assert lr.bounds == (None if name.endswith("_v1") else "elub")
        again = DeviceLR.from_payload(through_torch(lr.to_payload()))  # in the current format
        np.testing.assert_allclose(again.predict_llr(Et[:10], Et[10:15]), stored["llr"][name].numpy(), rtol=1e-12, atol=1e-12)
    assert DeviceLR.from_payload(stored["payloads"]["cosine_logistic_lda2_v1"]).llr_bounds_ == (-np.inf, np.inf)
    from devicepool.estimators.embedding import read_bundle  # the shipped bundle's back end (0.5)

    E = stored["bundle_E"].numpy()
    lr = DeviceLR.from_payload(read_bundle()[1]["lr"])
    np.testing.assert_allclose(lr.predict_llr(E[:8], E[8:]), stored["bundle_llr"].numpy(), rtol=1e-12, atol=1e-12)


def test_payloads_of_earlier_versions_errors_and_the_open_set():
    stored = torch.load(LEGACY / "device_lr.pt", weights_only=True)
    old = stored["payloads"]["plda_isotonic_lda3"]
    with pytest.raises(ValueError, match="DeviceLR payload format version 3; .*update devicepool"):
        DeviceLR.from_payload(dict(old, format_version=3))
    with pytest.raises(ValueError, match=r"damaged model file \(KeyError: 'projection'\)"):
        DeviceLR.from_payload(dict(old, scorer={k: v for k, v in old["scorer"].items() if k != "projection"}))
    with pytest.raises(ValueError, match="unknown calibrator kind 'spline'"):
        DeviceLR.from_payload(dict(old, calibrator={"kind": "spline"}))
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3, 1, (50, 2)), rng.normal(3, 1, (50, 2))]
    clf = LogisticRegression().fit(X, np.repeat(["a", "b"], 50))
    model = OpenSetClassifier(clf, far=0.1, score="margin").calibrate(X, rng.normal(0, 1, (40, 2)))
    restored = OpenSetClassifier.from_payload(stored["open_set"], clf)
    assert restored.classifier is clf
    for attr in ("threshold_", "far_", "frr_", "n_known_", "n_unknown_", "far", "score"):
        assert getattr(restored, attr) == getattr(model, attr), attr
    with pytest.raises(ValueError, match="not a DeviceLR payload: it holds a OpenSetClassifier"):
        DeviceLR.from_payload(stored["open_set"])


# --------------------------------------------------------------------------- calibrate, compare


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"), n_devices=3, n_speakers=3, n_utterances=2)


@pytest.fixture(scope="module")
def models(folder_corpus, tmp_path_factory):
    """A da_cnn model file of ``devicepool train`` and its calibration (``calibrate``)."""
    folder = tmp_path_factory.mktemp("models")
    trained, calibrated = folder / "model.pt", folder / "calibrated.pt"
    assert main(["train", *corpus_args(folder_corpus), "--max-epochs", "2", "-o", str(trained),
                 "--quiet"]) == 0
    assert main(["calibrate", "--model", str(trained), *corpus_args(folder_corpus), "--mode", "neutral",
                 "-o", str(calibrated), "--quiet"]) == 0
    return trained, calibrated


def files_of(root, device, speaker, mode="neutral"):
    return sorted(str(p) for p in (root / device / mode).glob(f"{speaker}_*.wav"))


def test_the_calibrated_file_is_weights_only_and_still_predicts(models, folder_corpus, capsys):
    trained, calibrated = models
    payload = torch.load(calibrated, weights_only=True)
    before = torch.load(trained, weights_only=True)
    assert payload["format"] == "devicepool.pipeline" and payload["format_version"] == 3
    forensic = payload["provenance"]["forensic"]  # DeviceLR.to_payload(): the format of the file itself
    assert forensic["format"] == "devicepool.pipeline" and forensic["object"]["class"] == "devicepool.forensic.DeviceLR"
    assert forensic["object"]["fitted"]["scorer_"]["class"] == "devicepool.forensic.PLDAScorer"
    assert forensic["object"]["fitted"]["calibrator_"]["class"] == "devicepool.forensic.LogisticCalibrator"
    data = payload["provenance"]["forensic_data"]
    assert data["mode"] == "neutral" and data["n_recordings"] == 18 and len(data["devices"]) == 3
    assert 0 <= data["cllr_min"] <= data["cllr"]
    assert str(payload["object"]) == str(before["object"])
    assert payload["provenance"]["model"] == before["provenance"]["model"]
    files = sorted(str(p) for p in folder_corpus.rglob("*.wav"))[:5]
    assert main(["predict", str(trained), *files, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)["predictions"]
    assert main(["predict", str(calibrated), *files, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == plain


def test_calibrate_prints_pairs_and_an_optimistic_cllr(folder_corpus, models, tmp_path, capsys):
    trained, _ = models
    out = tmp_path / "sub" / "cos.pt"
    assert main(["calibrate", "--model", str(trained), *corpus_args(folder_corpus), "--scoring", "cosine",
                 "--calibration", "isotonic", "--n-references", "2", "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "same-device" in text and "different-device" in text and "Cllr" in text
    assert "optimistic, not a validation" in text
    lr = DeviceLR.from_payload(torch.load(out, weights_only=True)["provenance"]["forensic"])
    assert type(lr.calibrator_).__name__ == "IsotonicCalibrator" and lr.n_references == 2


def test_calibrate_reads_whether_the_corpus_knows_its_speakers(folder_corpus, models, tmp_path, capsys):
    trained, calibrated = models
    assert torch.load(calibrated, weights_only=True)["provenance"]["forensic_data"]["n_speakers"] == 3
    out = tmp_path / "unknown.pt"
    args = ["--corpus", "folder", "--root", str(folder_corpus), "--pattern", "{device}/{mode}/{utterance}.wav"]
    assert main(["calibrate", "--model", str(trained), *args, "--mode", "neutral", "-o", str(out),
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    # the command line prints warnings as one line of its own
    assert any(line.startswith("devicepool: warning: ") and "speakers are unknown" in line
               for line in captured.err.splitlines())
    assert "unknown speakers (neutral speech)" in text and "by other recordings" in text
    assert "no cross-validated Cllr: the corpus's speakers are unknown" in text
    data = torch.load(out, weights_only=True)["provenance"]["forensic_data"]
    assert data["n_speakers"] is None and data["n_recordings"] == 18 and "cv_cllr" not in data
    # evaluate --forensic has no folds without speakers: the flag that allows them is refused
    assert main(["evaluate", "--forensic", *args, "--allow-unknown-speakers", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "--allow-unknown-speakers does not apply" in one_line_error(capsys.readouterr().err)


def test_compare_json(models, folder_corpus, capsys):
    _, calibrated = models
    refs = files_of(folder_corpus, "phone_gsm", "spk01")
    same = files_of(folder_corpus, "phone_gsm", "spk02") + files_of(folder_corpus, "phone_gsm", "spk03")
    other = files_of(folder_corpus, "studio_condenser", "spk02")
    assert len(refs) == 2 and len(same) == 4 and len(other) == 2
    assert main(["compare", "--model", str(calibrated), "--reference", *refs,
                 "--questioned", *same, *other, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["hypotheses"] == {"H1": H1, "H2": H2} and doc["caution"] == CAUTION
    assert "ENFSI" in doc["verbal_scale"] and doc["references"] == refs
    assert [r["file"] for r in doc["questioned"]] == same + other
    llr = np.array([r["llr"] for r in doc["questioned"]])
    assert np.all(np.isfinite(llr))
    assert llr[:4].mean() > llr[4:].mean()  # the same device is more alike than another
    for r in doc["questioned"]:
        assert r["lr"] == pytest.approx(10 ** r["llr"])
        assert r["verbal"] == verbal_equivalent(float(f"{r['llr']:.2f}"))
    cal = doc["calibration"]
    assert cal["scoring"] == "plda" and cal["calibration"] == "logistic"
    assert cal["n_same_pairs"] > 0 and cal["n_diff_pairs"] > 0 and "optimistic" in cal["cllr_note"]
    assert cal["devices"] == ["phone_gsm", "studio_condenser", "voice_recorder_adpcm"]


def test_compare_text_has_hypotheses_verbal_scale_and_escaped_names(models, folder_corpus, tmp_path,
                                                                     capsys):
    _, calibrated = models
    refs = files_of(folder_corpus, "phone_gsm", "spk01")
    odd = tmp_path / "odd\tname.wav"
    shutil.copy(files_of(folder_corpus, "phone_gsm", "spk02")[0], odd)
    other = files_of(folder_corpus, "voice_recorder_adpcm", "spk03")[0]
    assert main(["compare", "--model", str(calibrated), "--reference", *refs,
                 "--questioned", str(odd), other]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    comments = [ln for ln in lines if ln.startswith("# ")]
    rows = [ln for ln in lines if not ln.startswith("#")]
    assert comments[0].startswith(f"# H1: {H1}") and comments[1].startswith(f"# H2: {H2}")
    assert CAUTION in comments[2] and "not the probability that H1 is true" in comments[2]
    assert len(rows) == 2
    fields = [ln.split("\t") for ln in rows]
    assert fields[0][0] == str(odd).replace("\t", "\\t") and fields[1][0] == other
    for f in fields:
        assert len(f) == 3 and f[1][0] in "+-" and len(f[1].split(".")[1]) == 2
        assert f[2] == verbal_equivalent(float(f[1]))
        assert "support" in f[2]
    assert "calibration compared each recording with up to 3" in captured.err  # 2 references given


def test_compare_errors_are_one_line(models, folder_corpus, tmp_path, capsys):
    import joblib

    trained, calibrated = models
    refs = files_of(folder_corpus, "phone_gsm", "spk01")
    q = files_of(folder_corpus, "phone_gsm", "spk02")[:1]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    cases = [
        (["--model", str(trained), "--reference", *refs, "--questioned", *q], "devicepool calibrate"),
        (["--model", str(calibrated), "--reference", str(tmp_path / "gone.wav"), "--questioned", *q],
         "gone.wav"),
        (["--model", str(calibrated), "--reference", *refs, "--questioned", str(bad)], "broken.wav"),
        (["--model", str(calibrated), "--reference", *refs, "--questioned", refs[0]],
         "also a reference"),
        (["--model", str(tmp_path / "none.pt"), "--reference", *refs, "--questioned", *q], "none.pt"),
        (["--model", str(calibrated), "--reference", *refs], "--questioned"),
    ]
    joblib.dump({"not": "a model"}, tmp_path / "old.joblib")
    cases.append((["--model", str(tmp_path / "old.joblib"), "--reference", *refs, "--questioned", *q],
                  "is a pickle"))
    for argv, expected in cases:
        assert main(["compare", *argv]) == 2, argv
        line = one_line_error(capsys.readouterr().err)
        assert expected in line, (argv, line)
    payload = torch.load(calibrated, weights_only=True)
    payload["provenance"]["forensic"]["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    assert main(["compare", "--model", str(tmp_path / "future.pt"), "--reference", *refs,
                 "--questioned", *q]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "forensic calibration" in line and "future.pt" in line


def test_calibrate_errors_and_a_pickled_model(models, folder_corpus, tmp_path, capsys):
    import joblib

    from devicepool.cli._modelfile import load_model

    trained, _ = models
    joblib.dump(load_model(trained), tmp_path / "old.joblib")
    base = ["calibrate", *corpus_args(folder_corpus), "--quiet"]
    assert main([*base, "--model", str(tmp_path / "old.joblib"), "-o", str(tmp_path / "x.pt")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "is a pickle" in line and "--allow-pickle" in line
    assert not (tmp_path / "x.pt").exists()
    assert main([*base, "--model", str(trained), "-o", str(tmp_path)]) == 2  # a folder as output
    assert "is a folder" in one_line_error(capsys.readouterr().err)
    assert main(["calibrate", "--model", str(trained), "--corpus", "folder", "--root",
                 str(tmp_path / "nope"), "--pattern", PATTERN, "-o", str(tmp_path / "y.pt")]) == 2
    assert "does not exist" in one_line_error(capsys.readouterr().err)
    out = tmp_path / "from-pickle.pt"
    assert main([*base, "--model", str(tmp_path / "old.joblib"), "--allow-pickle", "--scoring", "cosine",
                 "-o", str(out)]) == 0
    payload = torch.load(out, weights_only=True)
    provenance = payload["provenance"]
    assert provenance["model"] == "da_cnn" and DeviceLR.from_payload(provenance["forensic"]).scoring == "cosine"


# --------------------------------------------------------------------------- evaluate --forensic


class FakeResult:
    def to_markdown(self):
        return "| forensic | Cllr |\n|---|---|\n| fake | 0.1 |"


def fake_protocol(calls, with_wait=False):
    def run_forensic_protocol(corpus, model="da_cnn", n_splits=3, mode="neutral", scoring="plda",
                              calibration="logistic", far=0.05, model_params=None, random_state=0,
                              out_dir=None, progress=True, n_jobs=None):
        calls.append(dict(corpus=corpus, model=model, n_splits=n_splits, mode=mode, scoring=scoring,
                          calibration=calibration, far=far, model_params=model_params,
                          random_state=random_state, out_dir=out_dir, progress=progress, n_jobs=n_jobs))
        return FakeResult()

    def with_wait_param(corpus, wait=False, **kwargs):
        result = run_forensic_protocol(corpus, **kwargs)
        calls[-1]["wait"] = wait
        return result

    return with_wait_param if with_wait else run_forensic_protocol


def test_evaluate_forensic_passes_the_settings(folder_corpus, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(protocol, "run_forensic_protocol", fake_protocol(calls), raising=False)
    out = tmp_path / "forensic"
    assert main(["evaluate", "--forensic", *corpus_args(folder_corpus), "--models", "sa_cnn",
                 "--mode", "whisper", "--n-splits", "2", "--seed", "7", "--out", str(out),
                 "--max-epochs", "4", "--scoring", "cosine", "--calibration", "isotonic",
                 "--far", "0.1", "--n-jobs", "2", "--quiet"]) == 0
    assert "| fake | 0.1 |" in capsys.readouterr().out
    (call,) = calls
    assert len(call["corpus"].data) == 36
    assert {k: v for k, v in call.items() if k != "corpus"} == {
        "model": "sa_cnn", "n_splits": 2, "mode": "whisper", "scoring": "cosine",
        "calibration": "isotonic", "far": 0.1, "model_params": {"max_epochs": 4},
        "random_state": 7, "out_dir": str(out), "progress": False, "n_jobs": 2}
    calls.clear()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--forensic", *corpus_args(folder_corpus), "--quiet"]) == 0
    (call,) = calls  # the function's own defaults where no flag is given
    assert call["model"] == "da_cnn" and call["mode"] == "neutral" and call["scoring"] == "plda"
    assert call["model_params"] is None and call["out_dir"] == "devicepool-forensic"


def test_evaluate_forensic_wait_and_usage_errors(folder_corpus, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(protocol, "run_forensic_protocol", fake_protocol(calls), raising=False)
    base = ["evaluate", *corpus_args(folder_corpus), "--out", str(tmp_path / "o"), "--quiet"]
    for extra, expected in ((["--forensic", "--models", "da_cnn,sa_cnn"], "one model"),
                            (["--forensic", "--conditions", "N"], "--conditions"),
                            (["--forensic", "--mode-augmentation"], "--mode-augmentation"),
                            (["--forensic", "--wait"], "--wait is not supported"),
                            (["--forensic", "--far", "1.5"], "--far"),
                            (["--mode", "neutral"], "--forensic only"),
                            (["--scoring", "cosine"], "--forensic only")):
        assert main([*base, *extra]) == 2, extra
        assert expected in one_line_error(capsys.readouterr().err), extra
    assert calls == []
    monkeypatch.setattr(protocol, "run_forensic_protocol", fake_protocol(calls, with_wait=True))
    assert main([*base, "--forensic", "--wait"]) == 0
    assert calls[-1]["wait"] is True


def test_evaluate_forensic_without_the_protocol_is_a_one_line_error(folder_corpus, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.delattr(protocol, "run_forensic_protocol", raising=False)
    assert main(["evaluate", "--forensic", *corpus_args(folder_corpus), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    assert "run_forensic_protocol" in one_line_error(capsys.readouterr().err)


@pytest.mark.slow
def test_evaluate_forensic_end_to_end(tmp_path, capsys):
    root = write_corpus(tmp_path / "corpus", n_devices=6, n_speakers=6, n_utterances=2)
    out = tmp_path / "forensic"
    assert main(["evaluate", "--forensic", *corpus_args(root), "--models", "da_cnn",
                 "--max-epochs", "2", "--n-splits", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.strip() and "|" in text
    assert Path(out).is_dir()
