"""Weights-only model files of the classical systems and the fusion (gsv_svm, gmm_ubm, fusion),
and the files of earlier versions (tests/data/legacy, written by devicepool 0.5 before the
one persistence module)."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from devicepool import persistence
from devicepool.cli._common import UsageError
from devicepool.cli._modelfile import (
    load_model,
    model_name_of,
    read_model_file,
    save_model,
    weights_only_savable,
    why_not_savable,
)
from devicepool.datasets import make_device_corpus
from devicepool.estimators import GaussianSupervector, SACNNClassifier
from devicepool.estimators._routing import groups_fit_params
from devicepool.features import MFCC, FilterBank, Waveform
from devicepool.forensic import DeviceLR
from devicepool.persistence import ALLOWED, check_savable, from_payload, to_payload
from devicepool.protocol import FusionFactory, get_model


@pytest.fixture(scope="module")
def corpus():
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, modes="neutral",
                              random_state=0)


LEGACY = Path(__file__).parent / "data" / "legacy"


def round_trip(est):
    """``est`` through a weights-only file (:func:`persistence.to_payload`, torch, back)."""
    buffer = io.BytesIO()
    torch.save(to_payload(est), buffer)
    buffer.seek(0)
    return from_payload(torch.load(buffer, weights_only=True))[0]


def _step(node, name):
    """The node of the step ``name`` of a stored Pipeline node."""
    return dict(p["__tuple__"] for p in node["params"]["steps"])[name]


def _fit(pipe, corpus):
    return pipe.fit(corpus.data, corpus.target, **groups_fit_params(pipe, corpus.groups))


@pytest.fixture(scope="module")
def classical(corpus):
    """The fitted gsv_svm and gmm_ubm pipelines of the registry (4 Gaussians)."""
    return {name: _fit(get_model(name).make_pipeline(16000, random_state=0, n_components=4), corpus)
            for name in ("gsv_svm", "gmm_ubm")}


def _fusion(members, **params):
    # selection=None: both members are kept, whatever they score (their files are the subject)
    return Pipeline([("features", Waveform()),
                     ("clf", FusionFactory(members)(random_state=0, n_components=4, selection=None,
                                                    **params))])


@pytest.fixture(scope="module")
def fused(corpus):
    return _fit(_fusion(("gsv_svm", "gmm_ubm")), corpus)


def _assert_same_outputs(rebuilt, pipe, X):
    np.testing.assert_array_equal(rebuilt.predict(X), pipe.predict(X))
    assert rebuilt.classes_.dtype == pipe.classes_.dtype
    np.testing.assert_array_equal(rebuilt.classes_, pipe.classes_)
    for method in ("predict_proba", "predict_log_proba", "decision_function"):
        if hasattr(pipe, method):  # bit-identical, not merely close
            np.testing.assert_array_equal(getattr(rebuilt, method)(X), getattr(pipe, method)(X))
        assert hasattr(rebuilt, method) == hasattr(pipe, method)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["gsv_svm", "gmm_ubm"])
def test_a_classical_pipeline_round_trips_weights_only(classical, corpus, name, tmp_path):
    pipe = classical[name]
    path = tmp_path / f"{name}.pt"
    assert save_model(pipe, name, path) == "weights-only"
    payload = torch.load(path, weights_only=True)  # plain values and tensors only
    assert payload["format"] == "devicepool.pipeline" and payload["format_version"] == 3
    assert payload["provenance"]["model"] == name
    features = _step(payload["object"], "features")
    assert features["class"] == "devicepool.features.FilterBank"
    assert features["params"] == pipe[0].get_params()
    assert _step(payload["object"], "clf")["class"] == "sklearn.pipeline.Pipeline"
    rebuilt, read = read_model_file(path)
    assert read["model"] == name
    assert repr(rebuilt) == repr(pipe)
    assert [type(s).__name__ for _, s in rebuilt[-1].steps] == [type(s).__name__ for _, s in pipe[-1].steps]
    _assert_same_outputs(rebuilt, pipe, corpus.data)
    _assert_same_outputs(load_model(path), pipe, corpus.data)
    assert model_name_of(pipe) == name


def test_the_fitted_state_keeps_its_dtypes_and_layout(classical):
    gsv, svm = classical["gsv_svm"][-1]["gsv"], classical["gsv_svm"][-1]["svm"]
    back = round_trip(classical["gsv_svm"][-1])
    for key in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        original, rebuilt = getattr(gsv.ubm_, key), getattr(back["gsv"].ubm_, key)
        assert rebuilt.dtype == original.dtype
        np.testing.assert_array_equal(rebuilt, original)
    np.testing.assert_array_equal(back["gsv"].ubm_.precisions_cholesky_,
                                  1 / np.sqrt(gsv.ubm_.covariances_))
    assert back["gsv"].n_ubm_frames_ == gsv.n_ubm_frames_
    assert back["gsv"].n_features_in_ == gsv.n_features_in_
    assert back["svm"].coef_.strides == svm.coef_.strides  # liblinear's Fortran order kept
    assert back["svm"].n_features_in_ == svm.n_features_in_
    gmm = classical["gmm_ubm"][-1]["gmm"]
    rebuilt = round_trip(gmm)
    assert isinstance(rebuilt.calibration_, tuple) and isinstance(rebuilt.calibration_[0], float)
    assert rebuilt.calibration_[0] == gmm.calibration_[0]
    np.testing.assert_array_equal(rebuilt.calibration_[1], gmm.calibration_[1])
    assert rebuilt.means_.dtype == gmm.means_.dtype and rebuilt.means_.shape == gmm.means_.shape


def test_mfcc_keeps_its_own_filterbank():
    mfcc = MFCC(n_mfcc=12, n_deltas=2, frames="speech", filterbank=FilterBank(n_mels=30, sample_rate=8000))
    node = to_payload(mfcc)["object"]
    assert node["params"]["filterbank"]["class"] == "devicepool.features.FilterBank"
    rebuilt = round_trip(mfcc)
    assert type(rebuilt.filterbank) is FilterBank
    assert rebuilt.filterbank.get_params() == mfcc.filterbank.get_params()
    assert repr(rebuilt) == repr(mfcc)
    x = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.transform([x])[0], mfcc.transform([x])[0])


def test_a_fusion_round_trips_weights_only(fused, corpus, tmp_path):
    path = tmp_path / "fusion.pt"
    assert save_model(fused, "fusion", path) == "weights-only"
    payload = torch.load(path, weights_only=True)
    assert _step(payload["object"], "features")["class"] == "devicepool.features.Waveform"
    assert _step(payload["object"], "clf")["class"] == "devicepool.estimators.FusionClassifier"
    rebuilt = load_model(path)
    _assert_same_outputs(rebuilt, fused, corpus.data)
    a, b = fused[-1], rebuilt[-1]
    assert list(b.named_estimators_) == ["gsv_svm", "gmm_ubm"]
    assert [n for n, _ in b.estimators] == ["gsv_svm", "gmm_ubm"]
    assert all(not hasattr(m, "classes_") for _, m in b.estimators)  # unfitted templates
    assert b.estimators_[0] is b.named_estimators_["gsv_svm"]
    for key in ("weights_", "offsets_"):
        assert getattr(b, key).dtype == getattr(a, key).dtype
        np.testing.assert_array_equal(getattr(b, key), getattr(a, key))
    assert b.dev_cross_entropy_ == a.dev_cross_entropy_ and b.dev_accuracy_ == a.dev_accuracy_
    assert b.n_dev_ == a.n_dev_
    assert b.get_params(deep=False)["validation_fraction"] == a.validation_fraction
    got, want = b.member_scores(corpus.data), a.member_scores(corpus.data)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert model_name_of(fused) == "fusion"


def test_a_fusion_with_a_network_member_round_trips(corpus, tmp_path):
    pipe = _fit(_fusion(("da_cnn", "gmm_ubm"), max_steps=2), corpus)
    path = tmp_path / "fusion.pt"
    assert save_model(pipe, "fusion", path) == "weights-only"
    node = _step(torch.load(path, weights_only=True)["object"], "clf")["fitted"]["estimators_"][0]
    assert node["class"] == "sklearn.pipeline.Pipeline"
    assert "state_dict" in _step(node, "clf")["fitted"]  # the network's hook: its weights
    _assert_same_outputs(load_model(path), pipe, corpus.data)


# ----------------------------------------------------------------------------- refusals


def test_an_unknown_class_name_in_a_payload_is_refused(classical, tmp_path):
    path = tmp_path / "m.pt"
    save_model(classical["gsv_svm"], "gsv_svm", path)

    payload = torch.load(path, weights_only=True)
    _step(_step(payload["object"], "clf"), "svm")["class"] = "os.system"
    with pytest.raises(ValueError, match=r"unknown class 'os.system' at "
                                         r"object.steps\['clf'\].steps\['svm'\] in the model file"):
        from_payload(payload, source="'m.pt'")
    torch.save(payload, tmp_path / "nested.pt")
    with pytest.raises(UsageError, match="cannot load model: .*nested.pt.*unknown class 'os.system'"):
        load_model(tmp_path / "nested.pt")

    payload = torch.load(path, weights_only=True)
    _step(payload["object"], "clf")["class"] = "sklearn.linear_model.LogisticRegression"
    with pytest.raises(ValueError, match="unknown class 'sklearn.linear_model.LogisticRegression'"):
        from_payload(payload, source="'m.pt'")

    payload = {"format": "devicepool.pipeline", "format_version": 3,
               "object": {"class": "builtins.eval", "params": {}, "fitted": {}}}
    with pytest.raises(ValueError, match="unknown class 'builtins.eval'"):
        from_payload(payload)
    assert not any("eval" in name for name in ALLOWED)


def test_a_damaged_payload_names_what_is_wrong(classical, tmp_path):
    path = tmp_path / "m.pt"
    save_model(classical["gmm_ubm"], "gmm_ubm", path)
    at = r"'m.pt': damaged model file: object.steps\['clf'\].steps\['gmm'\]"
    payload = torch.load(path, weights_only=True)
    del _step(_step(payload["object"], "clf"), "gmm")["fitted"]
    with pytest.raises(ValueError, match=at + r" \(GMMUBMClassifier\) has no parameters or fitted state"):
        from_payload(payload, source="'m.pt'")
    payload = torch.load(path, weights_only=True)
    _step(_step(payload["object"], "clf"), "gmm")["fitted"]["ubm_"]["fitted"]["means_"] = {"x": 0.0}
    with pytest.raises(ValueError, match=at + r".ubm_.means_ holds a dict of no known kind"):
        from_payload(payload, source="'m.pt'")
    payload = torch.load(path, weights_only=True)
    _step(_step(payload["object"], "clf"), "mfcc")["params"]["no_such_param"] = 1
    with pytest.raises(ValueError, match=r"'m.pt': damaged model file: object.steps\['clf'\].steps\['mfcc'\] "
                                         r"\(MFCC\)"):
        from_payload(payload, source="'m.pt'")


def test_an_older_reader_refuses_the_new_format_cleanly(classical, monkeypatch):
    payload = to_payload(classical["gmm_ubm"])
    monkeypatch.setattr(persistence, "FORMAT_VERSION", 2)  # a reader of format 2 only
    with pytest.raises(ValueError, match="has model file format 3; this devicepool reads format 2 "
                                         r"\(update devicepool\)"):
        from_payload(payload, source="'m.pt'")


# ----------------------------------------------------------------------------- what is savable


@pytest.mark.parametrize("name", ["gsv_svm", "gmm_ubm", "fusion", "da_cnn", "sa_cnn", "dft_cnn"])
def test_the_registered_models_are_savable_weights_only(name):
    assert weights_only_savable(get_model(name).make_pipeline(16000, random_state=0))


def _svc_subclass():
    class MySVC(LinearSVC):
        pass

    return MySVC()


@pytest.mark.parametrize("clf, culprit", [
    (LogisticRegression(), "LogisticRegression"),
    (Pipeline([("mfcc", MFCC()), ("gsv", GaussianSupervector()), ("lr", LogisticRegression())]),
     "LogisticRegression"),
    (Pipeline([("mfcc", MFCC()), ("gsv", GaussianSupervector()), ("svm", _svc_subclass())]), "MySVC"),
    (Pipeline([("mfcc", MFCC()), ("gsv", GaussianSupervector())]), "GaussianSupervector"),
    (Pipeline([("mfcc", MFCC()), ("gsv", GaussianSupervector(random_state=0)),
               ("svm", LinearSVC(C=lambda: 1.0))]), "parameter 'C' of LinearSVC"),
])
def test_other_classifiers_are_not_savable_weights_only(clf, culprit, tmp_path):
    pipe = Pipeline([("features", FilterBank()), ("clf", clf)])
    assert not weights_only_savable(pipe)
    assert culprit in why_not_savable(pipe)
    with pytest.raises(UsageError, match=f"cannot be saved weights-only .*{culprit}.*--allow-pickle"):
        save_model(pipe, "custom", tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_the_feature_step_must_be_allow_listed():
    pipe = get_model("gmm_ubm").make_pipeline(16000)
    assert not weights_only_savable(Pipeline([("features", MFCC()), ("clf", pipe[-1])]))
    assert not weights_only_savable(pipe[-1])  # no feature step
    with pytest.raises(ValueError, match=r"x.steps\['gmm'\]: .*LogisticRegression.*cannot be saved"):
        check_savable(Pipeline([("mfcc", MFCC()), ("gmm", LogisticRegression())]), path="x")


def test_fit_only_parameters_that_are_not_plain_are_left_out(classical, corpus):
    gmm = classical["gmm_ubm"][-1]["gmm"]
    gmm_rs = round_trip(gmm)
    gmm_rs.random_state = np.random.RandomState(0)  # fit-only: left out, prediction unchanged
    rebuilt = round_trip(gmm_rs)
    assert rebuilt.random_state is None
    X = classical["gmm_ubm"][:-1].transform(corpus.data[:3])
    X = classical["gmm_ubm"][-1]["mfcc"].transform(X)
    np.testing.assert_array_equal(rebuilt.predict_proba(X), gmm.predict_proba(X))


# ----------------------------------------------------------------------------- earlier versions


def assert_as_stored(got, stored):
    """Values of a stored fixture made on another machine: labels exactly, scores to round-off
    (a CPU with another SIMD path sums in another order: ~1e-15 apart in float64; float32 scores
    of the networks get float32's round-off)."""
    stored = np.asarray(stored)
    if np.issubdtype(stored.dtype, np.floating):
        tol = 1e-12 if stored.dtype == np.float64 else 1e-6
        np.testing.assert_allclose(got, stored, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(got, stored)


@pytest.mark.parametrize("name", ["gsv_svm", "gmm_ubm", "fusion", "sa_cnn"])
def test_model_files_of_earlier_versions_load_and_predict_the_same(corpus, name):
    """Files of ``devicepool.pipeline`` format 2 (classical, fusion) and 1 (a network, with
    the forensic calibration of ``devicepool calibrate``), as devicepool 0.5 wrote them."""
    expected = np.load(LEGACY / "expected.npz")
    model, provenance = read_model_file(LEGACY / f"{name}.pt")
    assert provenance["model"] == name and provenance["devicepool_version"] == "0.5.0"
    # the expected values were computed with one BLAS thread, on another CPU: labels are the same,
    # scores the same to round-off (another CPU's SIMD path sums in another order)
    with threadpool_limits(1):
        for method in ("predict", "predict_proba", "decision_function"):
            if f"{name}_{method}" in expected:
                assert_as_stored(getattr(model, method)(corpus.data), expected[f"{name}_{method}"])
    if name == "fusion":
        fusion = model[-1]
        assert [n for n, _ in fusion.estimators] == ["gsv_svm", "gmm_ubm"]
        assert all(not hasattr(m, "classes_") for _, m in fusion.estimators)  # clones, unfitted
        assert fusion.estimators_[1] is fusion.named_estimators_["gmm_ubm"]
    if name == "sa_cnn":
        lr = DeviceLR.from_payload(provenance["forensic"])
        E = model.transform(corpus.data)
        assert_as_stored(lr.predict_llr(E[:4], E[4:8]), expected["sa_cnn_llr"])
        assert provenance["forensic_data"]["corpus"] == "synthetic"
        again = round_trip(model)  # and written again in the current format
        assert_as_stored(again.predict_proba(corpus.data), expected["sa_cnn_predict_proba"])


def test_a_classifier_file_of_an_earlier_version_loads(corpus):
    """``devicepool.estimator`` format 2, of ``SACNNClassifier.save`` in devicepool 0.5."""
    expected = np.load(LEGACY / "expected.npz")
    clf = SACNNClassifier.load(LEGACY / "sa_cnn_classifier.pt")
    feats = read_model_file(LEGACY / "sa_cnn.pt")[0][0].transform(corpus.data)
    assert_as_stored(clf.predict_proba(feats), expected["sa_cnn_predict_proba"])
    assert clf.module_.band_pooling == "preserve"
