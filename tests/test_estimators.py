"""Tests of the skorch/sklearn classifiers (masking, seeds, errors, persistence, sklearn)."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from devicepool.estimators import DACNNClassifier, DFTCNNClassifier, SACNNClassifier
from devicepool.features import AttentionWeights

FB_CLASSIFIERS = [SACNNClassifier, DACNNClassifier]
ALL = FB_CLASSIFIERS + [DFTCNNClassifier]


def make_utterances(n=60, n_classes=3, width=24, seed=0, min_len=12, max_len=40):
    """Random frames with a class-dependent offset in a few bands (separable)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    offsets = np.zeros((n_classes, width), np.float32)
    for c in range(n_classes):
        offsets[c, (c * width) // n_classes: (c * width) // n_classes + max(1, width // 8)] = 2.5
    X = [(rng.normal(size=(int(rng.integers(min_len, max_len + 1)), width)) + offsets[c])
         .astype(np.float32) for c in y]
    labels = np.array(["mic", "phone", "laptop", "tablet"])[y]
    return X, labels


def make_dft(n=36, n_classes=3, width=129, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    shapes = [np.exp(-0.5 * ((np.arange(width) - (c + 1) * width / (n_classes + 1)) / 8) ** 2)
              for c in range(n_classes)]
    X = [(np.abs(rng.normal(size=(int(rng.integers(1, 4)), width))) * (1 + 4 * shapes[c]))
         .astype(np.float32) for c in y]
    return X, np.array(["a", "b", "c"])[y]


FAST = dict(max_epochs=3, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_utterances(30)
    Xd, yd = make_dft(18)
    return {
        SACNNClassifier: (SACNNClassifier(**FAST).fit(X, y), X, y),
        DACNNClassifier: (DACNNClassifier(**FAST).fit(X, y), X, y),
        DFTCNNClassifier: (DFTCNNClassifier(**FAST).fit(Xd, yd), Xd, yd),
    }


@pytest.mark.parametrize("Cls", ALL)
def test_learns_separable_problem(Cls):
    if Cls is DFTCNNClassifier:
        X, y = make_dft(60, seed=1)
        Xt, yt = make_dft(30, seed=2)
    else:
        X, y = make_utterances(90, seed=1)
        Xt, yt = make_utterances(30, seed=2)
    clf = Cls(max_epochs=25, lr=3e-3, random_state=0).fit(X, y)
    acc = clf.score(Xt, yt)
    assert acc >= 0.8, acc  # chance is 1/3
    assert set(clf.predict(Xt)) <= set(clf.classes_)
    assert list(clf.classes_) == sorted(set(y))


@pytest.mark.parametrize("Cls", ALL)
def test_padding_never_changes_prediction(Cls, fitted):
    clf, X, _ = fitted[Cls]
    short = X[0]
    long_ = np.concatenate([X[1]] * 6)[: 5 * len(short) + 1] if Cls is not DFTCNNClassifier \
        else np.concatenate([X[1]] * 10)[: 5 * len(short)]
    alone = clf.predict_proba([short])[0]
    batched = clf.predict_proba([long_, short, long_])[1]
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    np.testing.assert_allclose(clf.transform([short])[0], clf.transform([long_, short])[1],
                               atol=1e-5)


@pytest.mark.parametrize("Cls", ALL)
def test_predict_proba_and_labels(Cls, fitted):
    clf, X, y = fitted[Cls]
    p = clf.predict_proba(X)
    assert p.shape == (len(X), 3)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-9)
    assert clf.predict(X).dtype.kind == "U"
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[p.argmax(1)])
    emb = clf.transform(X)
    assert emb.dtype == np.float32 and emb.shape == (len(X), clf.module_.embedding_dim)


@pytest.mark.parametrize("Cls", ALL)
def test_same_seed_same_predictions_and_global_rng_untouched(Cls):
    X, y = make_dft(12) if Cls is DFTCNNClassifier else make_utterances(12)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = Cls(max_epochs=2, random_state=7).fit(X, y).predict_proba(X)
    assert torch.equal(before, torch.get_rng_state())
    b = Cls(max_epochs=2, random_state=7).fit(X, y).predict_proba(X)
    c = Cls(max_epochs=2, random_state=8).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_attention_weights_sa_and_da(fitted):
    sa, X, _ = fitted[SACNNClassifier]
    w = sa.attention_weights(X[:4])
    assert isinstance(w, list) and len(w) == 4
    for wi, u in zip(w, X[:4]):
        assert wi.shape == (int(np.ceil(len(u) / 4)),)
        assert abs(wi.sum() - 1) < 1e-5
    da, X, _ = fitted[DACNNClassifier]
    att = da.attention_weights(X[:5])
    assert isinstance(att, AttentionWeights) and att.time_reduction == 4
    assert att["band"].shape == (5, 24) and att.band is att["band"]  # reads like 0.5's Bunch
    np.testing.assert_allclose(att["band"].sum(1), 1, atol=1e-5)
    assert [t.shape[0] for t in att["time"]] == [int(np.ceil(len(u) / 4)) for u in X[:5]]


def test_tiny_data_and_singleton_classes_do_not_crash():
    X, y = make_utterances(12, n_classes=3)
    clf = DACNNClassifier(max_epochs=2, valid_fraction=0.2, random_state=0).fit(X, y)
    assert "valid_loss" in clf.history[-1]  # 12 utterances: stratified hold-out of 3
    y2 = y.copy()
    y2[0] = "tablet"  # a class with one utterance -> no hold-out, train-loss stopping
    clf = SACNNClassifier(max_epochs=2, valid_fraction=0.2, random_state=0).fit(X, y2)
    assert "valid_loss" not in clf.history[-1]
    assert len(clf.classes_) == 4


def test_no_hold_out_unless_early_stopping_uses_it():
    # valid_fraction="auto": every utterance trains when nothing reads the hold-out
    X, y = make_utterances(30)
    groups = np.arange(30) % 6
    clf = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y, groups=groups)
    assert clf.train_plan_.n_valid == 0 and clf.train_plan_.n_train == 30
    assert "valid_loss" not in clf.history[-1]
    clf = SACNNClassifier(max_epochs=2, patience=5, random_state=0).fit(X, y, groups=groups)
    assert clf.train_plan_.n_valid == 5 and len(clf.train_plan_.valid_speakers) == 1  # 0.2 x 6
    clf = SACNNClassifier(max_epochs=2, valid_fraction=0.5, random_state=0).fit(X, y, groups=groups)
    assert len(clf.train_plan_.valid_speakers) == 3 and "valid_acc" in clf.history[-1]


def test_early_stopping_restores_best():
    X, y = make_utterances(30)
    clf = SACNNClassifier(max_epochs=40, patience=2, lr=0.05, random_state=0).fit(X, y)
    losses = clf.history[:, "valid_loss"]
    best = int(np.argmin(losses))
    assert len(losses) < 40 or best == len(losses) - 1
    assert clf.best_epoch_ == best + 1
    assert clf.history[best, "best"] is True


def test_train_split_none_and_skorch_overrides():
    X, y = make_utterances(20)
    from skorch.callbacks import EpochScoring  # noqa: F401
    from skorch.dataset import ValidSplit

    clf = SACNNClassifier(max_epochs=2, train_split=None, random_state=0,
                          module__hidden=30, iterator_train__pool_batches=2).fit(X, y)
    assert clf.module_.classifier[0].out_features == 30
    assert "valid_loss" not in clf.history[-1]
    clf = DACNNClassifier(max_epochs=2, train_split=ValidSplit(0.25, stratified=True),
                          patience=None, random_state=0).fit(X, y)
    assert "valid_loss" in clf.history[-1] and len(clf.history) == 2


@pytest.mark.parametrize("Cls", ALL)
def test_bad_inputs(Cls, fitted):
    clf, X, y = fitted[Cls]
    width = X[0].shape[1]
    with pytest.raises(ValueError, match="expecting"):
        clf.predict([np.zeros((5, width + 1), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        Cls(**FAST).fit([], [])
    with pytest.raises(ValueError, match="at least 2 classes"):
        Cls(**FAST).fit(X[:4], ["a"] * 4)
    bad = [a.copy() for a in X[:6]]
    bad[3][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"utterance 3: contains NaN"):
        Cls(**FAST).fit(bad, y[:6])
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.score(X[:2], ["martian", y[1]])
    with pytest.raises(NotFittedError):
        Cls().predict(X[:2])
    with pytest.raises(ValueError, match=r"utterance 1: has shape"):
        clf.predict([X[0], X[0][0]])
    with pytest.raises(ValueError, match=r"utterance 1: has 0 frames"):
        clf.predict([X[0], np.zeros((0, width), np.float32)])
    with pytest.raises(ValueError, match="utterances but y has"):
        Cls(**FAST).fit(X[:4], y[:3])
    with pytest.raises(TypeError, match="path or string"):
        clf.predict(["file.wav"])


@pytest.mark.parametrize("Cls", ALL)
def test_persistence_joblib_and_safe_save(Cls, fitted, tmp_path):
    clf, X, _ = fitted[Cls]
    p = clf.predict_proba(X)
    joblib.dump(clf, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict_proba(X), p)
    clf.save(tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["object"]["class"] == f"devicepool.estimators.{Cls.__name__}"
    loaded = Cls.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(loaded.predict_proba(X), p)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.get_params()["max_epochs"] == clf.max_epochs
    other = [c for c in ALL if c is not Cls][0]
    with pytest.raises(ValueError, match="holds a"):
        other.load(tmp_path / "m.pt")


def test_model_trained_on_cuda_loads_on_cpu(fitted, tmp_path):
    clf, X, _ = fitted[DACNNClassifier]
    p = clf.predict_proba(X)
    gpu_like = pickle.loads(pickle.dumps(clf))
    gpu_like.device = "cuda"  # as pickled by a GPU run (tensors are serialised by torch)
    joblib.dump(gpu_like, tmp_path / "g.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = joblib.load(tmp_path / "g.joblib")
    if not torch.cuda.is_available():
        assert str(back.device) == "cpu"
    np.testing.assert_allclose(back.predict_proba(X), p, atol=1e-6)
    # safe format: the stored device is ignored, weights are mapped to the CPU
    gpu_like.save(tmp_path / "g.pt")
    raw = torch.load(tmp_path / "g.pt", map_location="cpu", weights_only=True)
    assert raw["object"]["params"]["device"] == "cuda"
    assert DACNNClassifier.load(tmp_path / "g.pt").device == "cpu"


def test_sklearn_model_selection_group_kfold_pipeline():
    X, y = make_utterances(24)
    groups = np.repeat(np.arange(4), 6)  # "speakers"
    clf = DACNNClassifier(max_epochs=2, random_state=0)
    scores = cross_val_score(clf, X, y, cv=GroupKFold(n_splits=2), groups=groups)
    assert scores.shape == (2,)
    res = cross_validate(SACNNClassifier(max_epochs=2, random_state=0), X, y, cv=2,
                         return_estimator=True)
    assert len(res["estimator"]) == 2 and all(hasattr(e, "classes_") for e in res["estimator"])
    gs = GridSearchCV(SACNNClassifier(max_epochs=2, random_state=0),
                      {"lr": [1e-3, 3e-3], "module__hidden": [20]}, cv=2).fit(X, y)
    assert gs.best_params_["module__hidden"] == 20
    assert clone(clf).get_params()["max_epochs"] == 2


def test_pipeline_with_filterbank_on_waveforms():
    features = pytest.importorskip("devicepool.features")
    rng = np.random.default_rng(0)
    n = 16
    y = np.arange(n) % 2
    # two "devices": white noise vs low-passed noise, 0.3-0.5 s at 16 kHz
    waves = []
    for c in y:
        w = rng.normal(size=int(rng.integers(4800, 8000))).astype(np.float32) * 0.1
        if c:
            w = np.convolve(w, np.ones(8) / 8, mode="same").astype(np.float32)
        waves.append(w)
    pipe = Pipeline([("fbank", features.FilterBank()),
                     ("clf", DACNNClassifier(max_epochs=3, random_state=0))])
    groups = np.repeat(np.arange(4), 4)
    scores = cross_val_score(pipe, waves, y, cv=GroupKFold(n_splits=2), groups=groups)
    assert scores.shape == (2,)
    pipe.fit(waves, y)
    assert pipe.predict(waves[:3]).shape == (3,)


# --------------------------------------------------------------------------- sklearn checks

_EXPECTED = {
    "check_no_attributes_set_in_init":
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_",
    "check_do_not_raise_errors_in_init_or_set_params":
        "skorch re-initialises callbacks in set_params and rejects a non-list `callbacks`",
    "check_set_params":
        "skorch's set_params re-initialises callbacks/modules and rejects arbitrary values",
    "check_sample_weight_equivalence_on_dense_data":
        "mini-batch training: k copies of an utterance land in different batches and shift "
        "the input standardisation and batch-norm statistics, so weight k and k copies do not "
        "train identically; within a batch weight k equals k copies (tests/test_training.py)",
    "check_classifiers_train":
        "2 epochs (kept short for speed) of a CNN over one-frame utterances do not reach "
        "the check's 0.83 accuracy on tabular blobs; learning is tested separately",
}


#: SA-/DA-CNN's own reason
_UTTERANCE_NORM = (
    "utterance_norm=2 (the default) removes each utterance's level and tilt: of the check's "
    "2 tabular features per one-frame utterance only 1 is kept, and of that only the "
    "difference of the two, which does not separate the blobs; with utterance_norm=0 the "
    "check passes (test_sacnn_dacnn_learn_tabular_blobs_without_utterance_norm)")


def _expected_failed_checks(estimator):
    if isinstance(estimator, (SACNNClassifier, DACNNClassifier)):
        return dict(_EXPECTED, check_classifiers_train=_UTTERANCE_NORM)
    if isinstance(estimator, DFTCNNClassifier):
        # its __init__ names only what it changes (max_steps=800) and passes the rest on, so
        # the check, which draws values for the named parameters, never reaches `callbacks`
        return {k: v for k, v in _EXPECTED.items()
                if k != "check_do_not_raise_errors_in_init_or_set_params"}
    return _EXPECTED


@parametrize_with_checks(
    [Cls(max_epochs=2, batch_size=16, random_state=0, patience=None) for Cls in ALL],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_models_saved_before_the_recipe_still_load(tmp_path):
    """A format-1 file (devicepool 0.1: band sum, no batch norm, no utterance normalisation,
    readings not stored) and a pickled 0.1 module load with the readings their weights were
    trained with."""
    X, y = make_utterances(12)
    old = DACNNClassifier(max_epochs=1, random_state=0, module__band_pooling="sum",
                          module__batch_norm=False, module__utterance_norm=0).fit(X, y)
    params = {k: v for k, v in old.get_params(deep=False).items()
              if k in ("max_epochs", "batch_size", "lr", "random_state", "device")}
    payload = {"format": "devicepool.estimator", "estimator": "DACNNClassifier",  # no format_version
               "params": params, "classes": old.classes_.tolist(), "classes_dtype": old.classes_.dtype.str,
               "n_features_in": old.n_features_in_,
               "state_dict": {k: v.detach().cpu() for k, v in old.module_.state_dict().items()}}
    torch.save(payload, tmp_path / "v1.pt")
    loaded = DACNNClassifier.load(tmp_path / "v1.pt")
    np.testing.assert_allclose(loaded.predict_proba(X), old.predict_proba(X), atol=1e-6)
    # a module pickled by 0.1 has none of the three attributes
    state = old.module_.__dict__.copy()
    for k in ("band_pooling", "batch_norm", "utterance_norm"):
        state.pop(k)
    state["_modules"] = dict(state["_modules"])
    norm_state = old.module_.norm.__dict__.copy()
    norm_state.pop("utterance_coefficients")
    norm_state["_buffers"] = {k: v for k, v in norm_state["_buffers"].items() if k != "basis"}
    restored_norm = type(old.module_.norm).__new__(type(old.module_.norm))
    restored_norm.__setstate__(norm_state)
    state["_modules"]["norm"] = restored_norm
    cnn_state = old.module_.cnn.__dict__.copy()
    cnn_state["_modules"] = {k: v for k, v in cnn_state["_modules"].items() if k != "norms"}
    restored_cnn = type(old.module_.cnn).__new__(type(old.module_.cnn))
    restored_cnn.__setstate__(cnn_state)
    state["_modules"]["cnn"] = restored_cnn
    restored = type(old.module_).__new__(type(old.module_))
    restored.__setstate__(state)
    xb, L = torch.from_numpy(np.stack([X[0][:12], X[1][:12]])), torch.tensor([12, 12])
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(xb, L), old.module_.eval()(xb, L))
    assert restored.utterance_norm == 0 and loaded.module_.utterance_norm == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a usable GPU: device='cuda' is valid here")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_a_gpu_this_torch_cannot_use_is_a_clear_error_before_training(device):
    X, y = make_utterances(n=12)
    with pytest.raises(ValueError, match=r"DACNNClassifier: device='cuda.*'.*use device='cpu'"):
        DACNNClassifier(device=device, max_steps=1).fit(X, y)
    with pytest.raises(ValueError, match="is not a torch device"):
        DACNNClassifier(device="gpu", max_steps=1).fit(X, y)


def test_repr_is_scikit_learns_the_parameters_that_differ():
    assert repr(DACNNClassifier(max_steps=20)) == "DACNNClassifier(max_steps=20)"
    assert repr(SACNNClassifier()) == "SACNNClassifier()"
    assert repr(DFTCNNClassifier(lr=0.01, module__channels=(8, 16))) == (
        "DFTCNNClassifier(lr=0.01, module__channels=(8, 16))")


@pytest.mark.parametrize("Cls", [SACNNClassifier, DACNNClassifier])
def test_sacnn_dacnn_learn_tabular_blobs_without_utterance_norm(Cls):
    # the check SA-/DA-CNN are expected to fail at their default: without the utterance
    # normalisation, 2 epochs of the training recipe (one-cycle at lr 3e-3, batch norm,
    # band-preserving pooling) reach its 0.83 on tabular blobs
    from sklearn.utils.estimator_checks import check_classifiers_train

    check_classifiers_train(Cls.__name__, Cls(max_epochs=2, batch_size=16, random_state=0, patience=None,
                                              module__utterance_norm=0))
