"""devicepool.protocol's parts: the model registry, the deprecated alias, Fig. 2 data
from one pass (``predict_outputs``), voicing labels computed with the features."""

import importlib
import math
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

import devicepool.audio
from devicepool import protocol
from devicepool.datasets import make_device_corpus
from devicepool.features import voicing_labels
from devicepool.protocol import get_model, register_model, registered_models, run_protocol, unregister_model


@pytest.fixture(scope="module")
def corpus():
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)


# ----------------------------------------------------------------------------- registry


def test_registry_specs_build_pipelines():
    assert registered_models()[:3] == ["dft_cnn", "sa_cnn", "da_cnn"]
    pipe = get_model("dft_cnn").make_pipeline(sample_rate=8000, max_epochs=1, random_state=3)
    feats, clf = pipe.named_steps["features"], pipe.named_steps["clf"]
    assert type(feats).__name__ == "DFTMagnitude" and feats.sample_rate == 8000
    assert type(clf).__name__ == "DFTCNNClassifier" and clf.max_epochs == 1 and clf.random_state == 3
    spec = get_model("da_cnn")
    assert (spec.name, spec.label, spec.feature, spec.attention) == ("da_cnn", "DA-CNN", "fbank", True)
    assert type(spec.make_features(22050)).__name__ == "FilterBank"
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; choose from \['dft_cnn'"):
        get_model("resnet")
    with pytest.raises(ValueError, match="feature must be one of"):
        register_model("x", lambda **p: None, feature="mfcc")


def test_register_and_unregister():
    register_model("tmp_model", lambda random_state=None, **p: None, feature="dft")
    try:
        spec = get_model("tmp_model")
        assert spec.label == "tmp_model" and spec.feature == "dft" and not spec.attention
        assert registered_models()[-1] == "tmp_model"
    finally:
        unregister_model("tmp_model")
    assert "tmp_model" not in registered_models()
    with pytest.raises(ValueError, match="unknown model"):
        unregister_model("tmp_model")


def test_a_template_is_the_spec():
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    from devicepool.features import FilterBank

    template = Pipeline([("features", FilterBank()), ("clf", DummyClassifier(strategy="prior"))])
    register_model("tmp_template", template, label="T")
    try:
        spec = get_model("tmp_template")
        assert spec.template is template and spec.feature == "fbank"  # the default FilterBank's kind
        assert spec.accepts("strategy") and spec.accepts("clf__strategy") and not spec.accepts("nope")
        pipe = spec.make(strategy="uniform", random_state=4)
        assert pipe is not template and pipe.named_steps["clf"].strategy == "uniform"
        assert pipe.named_steps["clf"].random_state == 4 and template.named_steps["clf"].strategy == "prior"
        clf = spec.make_classifier(8000, strategy="most_frequent")
        assert type(clf).__name__ == "DummyClassifier" and clf.strategy == "most_frequent"
        assert spec.make_pipeline(8000).named_steps["features"].sample_rate == 8000
        with pytest.raises(ValueError, match=r"model 'tmp_template' takes \['nope'\]"):
            spec.make(nope=1)
        with pytest.raises(ValueError, match="differs from the template's first step"):
            register_model("tmp_template", template, feature="dft")
        # another first step is another feature kind, made (and cached) with its parameters
        register_model("tmp_template", Pipeline([("features", FilterBank(n_mels=40)), ("clf", DummyClassifier())]))
        kind = get_model("tmp_template").feature
        assert kind.startswith("fbank-") and get_model("tmp_template").make_features(8000).n_mels == 40
    finally:
        unregister_model("tmp_template")
    # the registered models are templates; a short name that means two things is refused
    gsv = get_model("gsv_svm")
    assert type(gsv.template).__name__ == "Pipeline" and gsv.accepts("n_components")
    seeded = gsv.make(random_state=5, n_components=8).named_steps["clf"]
    assert seeded.named_steps["gsv"].random_state == seeded.named_steps["svm"].random_state == 5
    assert seeded.named_steps["gsv"].n_components == 8
    with pytest.raises(ValueError, match="'max_iter' is ambiguous"):
        gsv.make(max_iter=10)
    assert gsv.make(clf__svm__max_iter=10).named_steps["clf"].named_steps["svm"].max_iter == 10


def test_protocol_refuses_feature_step_parameters_it_would_drop():
    # the protocol fits the classifier on features computed once per registered model, so
    # a parameter of the feature step would change nothing: it is refused, by either name
    dft = get_model("dft_cnn")
    assert dft.make(window=None).named_steps["features"].window is None  # the pipeline takes it
    for name in ("window", "features__window"):
        with pytest.raises(ValueError, match=r"'dft_cnn': '(features__)?window' sets features__window, a "
                                             r"parameter of its feature step.*register a model"):
            dft.make_classifier(16000, random_state=0, **{name: None})
    assert dft.make_classifier(16000, random_state=0, max_steps=3).max_steps == 3


def test_experiments_is_a_deprecated_alias():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from devicepool import experiments
    with pytest.warns(DeprecationWarning, match="devicepool.protocol"):
        experiments = importlib.reload(experiments)
    for name in experiments.__all__:
        assert getattr(experiments, name) is getattr(protocol, name), name
    assert experiments._seed_for is protocol.conditions.seed_for
    assert not hasattr(experiments, "_MODELS")  # the registry: registered_models(), get_model()
    assert set(experiments.__all__) < set(protocol.__all__)


# ----------------------------------------------------------------------------- Fig. 2 in one pass


class AttentionWeights(NamedTuple):
    time: list
    band: np.ndarray
    time_reduction: int


class UtteranceOutputs(NamedTuple):
    logits: np.ndarray
    embedding: np.ndarray
    attention: AttentionWeights


CALLS = {"predict": [], "predict_outputs": [], "attention_weights": []}


class MeanClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean of the mean frame."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        m = np.stack([u.mean(0) for u in X])
        self.classes_ = np.unique(y)
        self.means_ = np.stack([m[np.asarray(y) == c].mean(0) for c in self.classes_])
        return self

    def _logits(self, X):
        m = np.stack([u.mean(0) for u in X])
        return -((m[:, None, :] - self.means_[None]) ** 2).sum(-1)

    def predict(self, X):
        CALLS["predict"].append(len(X))
        return self.classes_[self._logits(X).argmax(1)]


def _uniform_time(X, reduction):
    return [np.full(math.ceil(len(u) / reduction), 1 / math.ceil(len(u) / reduction), np.float32)
            for u in X]


class OutputsClassifier(MeanClassifier):
    """With ``predict_outputs`` (the classifiers' one-pass contract), time reduction 2."""

    def predict_outputs(self, X):
        CALLS["predict_outputs"].append(len(X))
        band = np.full((len(X), X[0].shape[1]), 1 / X[0].shape[1], np.float32)
        emb = np.stack([u.mean(0) for u in X]).astype(np.float32)
        return UtteranceOutputs(self._logits(X), emb, AttentionWeights(_uniform_time(X, 2), band, 2))


class WeightsClassifier(MeanClassifier):
    """A user's estimator with ``attention_weights`` only (time reduction 4 assumed)."""

    def attention_weights(self, X):
        CALLS["attention_weights"].append(len(X))
        return {"time": _uniform_time(X, 4), "band": np.ones((len(X), X[0].shape[1]), np.float32)}


@pytest.fixture
def outputs_model():
    register_model("outputs", OutputsClassifier, feature="fbank", attention=True)
    for calls in CALLS.values():
        calls.clear()
    yield
    unregister_model("outputs")


def test_attention_and_matched_predictions_come_from_one_pass(corpus, outputs_model, tmp_path):
    res = run_protocol(corpus, models=["outputs"], out_dir=tmp_path, progress=False)
    mode = np.asarray(corpus.mode)
    # 6 fits: each ran its held-out utterances of the training mode once, through
    # predict_outputs, and predicted only the other mode's utterances with predict
    assert len(CALLS["predict_outputs"]) == 6 and len(CALLS["predict"]) == 6
    matched = [r for r in res.records if r["train_mode"] == r["test_mode"]]
    assert sorted(CALLS["predict_outputs"]) == sorted(r["n_test"] for r in matched)
    for r in matched:
        assert set(mode[r["test_index"]]) == {r["train_mode"]}
    # Fig. 2 data: the estimator's time reduction, stored and used for the frame labels
    for train_mode in ("neutral", "whisper"):
        att = res.attention[train_mode]
        assert att["time_reduction"] == [2] * len(att["time_weights"]) == [2] * 18
        for tw, lab in zip(att["time_weights"], att["frame_labels"]):
            assert len(tw) == math.ceil(len(lab) / 2)
    with np.load(next((tmp_path / "results" / "outputs").glob("attention-*.npz"))) as z:
        assert int(z["time_reduction"]) == 2
    assert (tmp_path / "fig2b-time-weights-neutral.png").is_file()
    loaded = protocol.load_results(tmp_path)
    assert loaded.attention["whisper"]["time_reduction"] == [2] * 18


def test_an_estimator_with_attention_weights_only(corpus, tmp_path):
    register_model("weights", WeightsClassifier, feature="fbank", attention=True)
    for calls in CALLS.values():
        calls.clear()
    try:
        res = run_protocol(corpus, models=["weights"], out_dir=tmp_path, progress=False)
    finally:
        unregister_model("weights")
    # predict for every condition, attention_weights once per fit on the matched utterances
    assert len(CALLS["predict"]) == 12 and len(CALLS["attention_weights"]) == 6
    att = res.attention["neutral"]
    assert att["time_reduction"] == [4] * 18 and att["band_weights"].shape == (18, 24)
    assert (tmp_path / "fig2c-time-weights-whisper.png").is_file()


def test_voicing_labels_computed_with_the_features_once(corpus, outputs_model, tmp_path, monkeypatch):
    loads = []
    real = devicepool.audio.as_waveform

    def counting(item, sample_rate, **kw):
        loads.append(kw.get("index"))
        return real(item, sample_rate, **kw)

    monkeypatch.setattr(devicepool.audio, "as_waveform", counting)
    register_model("outputs_dft", OutputsClassifier, feature="dft")
    try:
        res = run_protocol(corpus, models=["outputs", "outputs_dft"], out_dir=tmp_path,
                           progress=False, report=False)
        # FilterBank, DFTMagnitude and the voicing labels: each recording loaded once
        assert sorted(loads) == list(range(len(corpus.data)))
        assert len(list((tmp_path / "cache").glob("voicing-*.npz"))) == 1
        assert len(list((tmp_path / "cache").glob("features-*.npz"))) == 2
        att = res.attention["neutral"]
        for i, lab in zip(att["utterance_index"][:4], att["frame_labels"][:4]):
            assert list(lab) == list(np.asarray(voicing_labels(corpus.data[i], 16000)).astype(str))
        loads.clear()
        again = run_protocol(corpus, models=["outputs", "outputs_dft"], out_dir=tmp_path,
                             progress=False, report=False, resume=False)
        assert loads == []  # features and labels from the cache
        assert all(np.array_equal(a, b) for a, b in
                   zip(again.attention["neutral"]["frame_labels"], att["frame_labels"]))
    finally:
        unregister_model("outputs_dft")


# ----------------------------------------------------------------------------- one attention type


def test_attention_files_keep_their_format_and_voicing_codes_one_code_book(tmp_path):
    """An attention file of the former writer (voicing as codes into the classes present,
    sorted) loads into AttentionWeights with codes of the one code book, and is written
    back array for array the same."""
    from devicepool.features import VOICING_CLASSES, AttentionWeights
    from devicepool.protocol.store import _attention_key, _load_attention, _merge_attention, _save_attention

    old = tmp_path / "old.npz"
    np.savez(old, time_values=np.array([0.25, 0.75, 1.0], np.float32), time_lengths=np.array([2, 1]),
             label_values=np.array([1, 1, 0, 1, 1, 0], np.int8), label_lengths=np.array([5, 1]),
             label_names=np.array(["silence", "voiced"], dtype="U8"), utterance_index=np.array([7, 3]),
             time_reduction=np.array(4), band_weights=np.full((2, 3), 1 / 3, np.float32),
             config_key=np.array("k1"))
    att = _load_attention(old)
    assert isinstance(att, AttentionWeights) and len(att) == 2 and att.time_reduction == 4
    assert [v.tolist() for v in att.voicing] == [[0, 0, 2, 0, 0], [2]]  # voiced=0, silence=2
    assert att.frame_labels[1].tolist() == ["silence"] and att.utterance_index.tolist() == [7, 3]
    assert VOICING_CLASSES[att.voicing[0][2]] == "silence" and _attention_key(old) == "k1"
    new = tmp_path / "new.npz"
    _save_attention(new, att, "k1")
    with np.load(old) as a, np.load(new) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    # the protocol's Fig. 2 data: the fits of one training mode joined, still readable as the dict it was
    both = _merge_attention([att, AttentionWeights([np.ones(1)], np.ones((1, 3)), 2, [0], [[1, 1]])])
    assert len(both) == 3 and both.time_reductions == [4, 4, 2] and both["time_reduction"] == [4, 4, 2]
    assert both["band_weights"].shape == (3, 3) and both.utterance_index.tolist() == [7, 3, 0]
    assert both["frame_labels"][2].tolist() == ["unvoiced", "unvoiced"] and _merge_attention([]) is None
    with pytest.raises(ValueError, match="utterance 0: unknown frame label"):
        AttentionWeights([np.ones(1)], voicing=[["breath"]])
    with pytest.raises(ValueError, match="band must be"):
        AttentionWeights([np.ones(1)], band=np.ones((2, 3)))
