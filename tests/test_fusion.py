"""Score-level fusion: the linear fusion, FusionClassifier, and the registered models."""

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from devicepool.estimators import FusionClassifier
from devicepool.estimators._linear_fusion import cross_entropy, fit_linear_fusion, fuse


def _member(columns, model=None):
    """A member that sees only some of the features (a weaker or differently wrong view)."""
    return make_pipeline(ColumnTransformer([("keep", "passthrough", columns)]),
                         model if model is not None else LogisticRegression(max_iter=2000))


def _synthetic(seed, n_speakers=30, per_speaker=6, n_classes=4):
    """Classes in 6 dims: three 2-D views, each informative but noisy; speakers shift all."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = np.tile(np.arange(n_classes), n // n_classes + 1)[:n]
    groups = np.repeat(np.arange(n_speakers), per_speaker)
    centres = rng.normal(scale=1.0, size=(n_classes, 6))
    X = centres[y] + rng.normal(scale=1.2, size=(n, 6)) + rng.normal(scale=0.3, size=(n_speakers, 6))[groups]
    return X, y, groups


# ----------------------------------------------------------------------------- the linear fusion


def test_linear_fusion_recovers_scale_and_offsets():
    rng = np.random.default_rng(0)
    n, c = 4000, 3
    logits = rng.normal(scale=2.0, size=(n, c))
    true_b = np.array([0.5, -0.2, -0.3])
    p = np.exp(log_softmax(logits + true_b, axis=1))
    y = np.array([rng.choice(c, p=row) for row in p])
    (a,), b = fit_linear_fusion([logits / 3.0], y, c, ridge=0.0)  # scores 3x too small
    assert a == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(b, true_b - true_b.mean(), atol=0.1)
    assert b.sum() == pytest.approx(0.0, abs=1e-9)


def test_fused_cross_entropy_never_above_a_calibrated_member():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    good = np.eye(3)[y] * 2.0 + rng.normal(size=(600, 3))
    weak = np.eye(3)[y] * 0.5 + rng.normal(size=(600, 3))
    noise = rng.normal(size=(600, 3)) * 5.0
    w, b = fit_linear_fusion([good, weak, noise], y, 3, ridge=0.0)
    fused = cross_entropy(fuse([good, weak, noise], w, b), y)
    for s in (good, weak, noise):
        (a,), bb = fit_linear_fusion([s], y, 3, ridge=0.0)
        assert fused <= cross_entropy(fuse([s], [a], bb), y) + 1e-6
    assert abs(w[2]) * 5.0 < 0.2 * w[0] * 2.0  # the noise member is all but ignored


# ----------------------------------------------------------------------------- FusionClassifier


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_system_never_below_its_best_member(seed):
    X, y, groups = _synthetic(seed)
    test = groups >= 20
    members = [("a", _member([0, 1])), ("b", _member([2, 3])),
               ("c", _member([4, 5], LinearSVC()))]
    best = max(clone(m).fit(X[~test], y[~test]).score(X[test], y[test]) for _, m in members)
    for weighting in ("equal", "learned"):
        fused = FusionClassifier(members, weighting=weighting, random_state=0)
        fused.fit(X[~test], y[~test], groups=groups[~test])
        assert fused.score(X[test], y[test]) >= best, weighting
        assert set(fused.dev_accuracy_) == {"a", "b", "c", "fused"}
    # the learned fusion: on its own held-out scores, never above a calibrated member
    ce = fused.dev_cross_entropy_
    assert ce["fused"] <= min(ce[name] for name in "abc") + 1e-3


class _Recorder(ClassifierMixin, BaseEstimator):
    """Records what it was fitted on; scores with a nearest-class-mean rule."""

    def fit(self, X, y, groups=None):
        self.seen_groups_ = None if groups is None else set(np.asarray(groups).tolist())
        self.n_fit_ = len(y)
        self.classes_ = np.unique(y)
        self.centres_ = np.stack([np.asarray(X)[np.asarray(y) == c].mean(0) for c in self.classes_])
        return self

    def decision_function(self, X):
        return -((np.asarray(X)[:, None, :] - self.centres_[None]) ** 2).sum(-1)


def test_inner_split_holds_out_whole_speakers_and_members_are_refitted():
    X, y, groups = _synthetic(0, n_speakers=12)
    fused = FusionClassifier([("r", _Recorder()), ("s", _Recorder())], cv=None, random_state=3,
                             refit=False)
    fused.fit(X, y, groups=groups)
    seen = fused.estimators_[0].seen_groups_
    assert 0 < len(seen) < 12 and fused.n_dev_ == len(y) - fused.estimators_[0].n_fit_
    dev_speakers = set(groups.tolist()) - seen
    assert len(dev_speakers) == 4  # a third of 12, whole speakers
    refitted = FusionClassifier([("r", _Recorder())], cv=None, random_state=3).fit(X, y, groups=groups)
    assert refitted.estimators_[0].n_fit_ == len(y) and refitted.estimators_[0].seen_groups_ == set(range(12))
    proba = refitted.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(refitted.predict(X), refitted.classes_[proba.argmax(1)])


def test_fusion_without_speakers_warns_and_bad_setups_are_refused():
    X, y, _ = _synthetic(0)
    with pytest.warns(UserWarning, match="without groups.*flatters the members"):
        FusionClassifier([("r", _Recorder())], random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="estimators is empty"):
        FusionClassifier([]).fit(X, y)
    with pytest.raises(ValueError, match="names must be unique"):
        FusionClassifier([("r", _Recorder()), ("r", _Recorder())]).fit(X, y)
    with pytest.raises(TypeError, match=r"estimators\[0\] must be a \(name, estimator\) tuple"):
        FusionClassifier([_Recorder()]).fit(X, y)
    with pytest.raises(TypeError, match="needs fit and predict_proba or decision_function"):
        FusionClassifier([("x", object())]).fit(X, y)
    one_speaker = np.zeros(len(y))
    with pytest.raises(ValueError, match="no inner split leaves every device on both sides"):
        FusionClassifier([("r", _Recorder())], cv=None).fit(X, y, groups=one_speaker)
    with pytest.raises(ValueError, match="cv=3 folds .* do not exist"):
        FusionClassifier([("r", _Recorder())]).fit(X, y, groups=one_speaker)
    with pytest.warns(UserWarning, match="2 cross-fitting folds instead of cv=3"):
        FusionClassifier([("r", _Recorder())]).fit(X, y, groups=(np.arange(len(y)) // 4) % 2)
    with pytest.raises(ValueError, match="groups must have one entry per utterance"):
        FusionClassifier([("r", _Recorder())]).fit(X, y, groups=[1, 2])


def test_fusion_clones_and_reports_its_params():
    f = FusionClassifier([("a", _member([0])), ("b", _Recorder())], validation_fraction=0.25)
    g = clone(f)
    assert g.validation_fraction == 0.25 and [n for n, _ in g.estimators] == ["a", "b"]
    assert g.estimators[0][1] is not f.estimators[0][1]


# ----------------------------------------------------------------------------- in the protocol


@pytest.fixture(scope="module")
def small_corpus():
    from devicepool.datasets import make_device_corpus

    return make_device_corpus(n_devices=3, n_speakers=4, n_utterances=2, random_state=0)


def test_classical_models_and_a_fusion_run_in_the_protocol(small_corpus, tmp_path):
    from devicepool.protocol import FusionFactory, get_model, register_model, run_protocol, unregister_model

    register_model("fusion_classical", FusionFactory(("gsv_svm", "gmm_ubm")), "waveform",
                   "classical fusion")
    try:
        small = {"n_components": 8}
        res = run_protocol(small_corpus, models=["gsv_svm", "gmm_ubm", "fusion_classical"],
                           out_dir=tmp_path, progress=False, report=False,
                           model_params={"gsv_svm": small, "gmm_ubm": small,
                                         "fusion_classical": small})
        records = res.records
        assert {r["model"] for r in records} == {"gsv_svm", "gmm_ubm", "fusion_classical"}
        assert {r["condition"] for r in records} >= {"N", "W", "N/W", "W/N"}
        matched = [r["accuracy"] for r in records if r["condition"] in ("N", "W")]
        assert len(matched) == 3 * 2 * 3 and np.mean(matched) > 0.45  # chance: 1/3
        # the waveform kind is cached like the other features
        assert list(tmp_path.rglob("features-waveform-*.npz"))
    finally:
        unregister_model("fusion_classical")
    spec = get_model("fusion")
    assert spec.feature == "waveform" and spec.accepts("max_epochs") and not get_model("gsv_svm").accepts("max_epochs")
    pipe = spec.make_pipeline(8000, max_epochs=1)
    fusion = pipe.named_steps["clf"]
    assert type(pipe.named_steps["features"]).__name__ == "Waveform"
    assert [name for name, _ in fusion.estimators] == ["da_cnn", "dft_cnn", "gsv_svm"]
    # the registration measured in docs/classical.md (bench/results/fusion_variants_cpu.json)
    assert (fusion.cv, fusion.weighting, fusion.selection) == (3, "learned", None)
    members = dict(fusion.estimators)
    assert members["da_cnn"].named_steps["clf"].max_epochs == 1
    assert members["gsv_svm"].named_steps["features"].sample_rate == 8000
    with pytest.raises(ValueError, match=r"no member of the fusion .* takes \['nope'\]"):
        spec.factory(nope=1)


def test_cross_fitted_fusion_uses_every_training_utterance_once_as_held_out():
    X, y, groups = _synthetic(1, n_speakers=9)
    fused = FusionClassifier([("r", _Recorder()), ("lr", _member([0, 1]))], cv=3, weighting="learned",
                             random_state=0).fit(X, y, groups=groups)
    assert fused.n_dev_ == len(y)
    assert fused.estimators_[0].n_fit_ == len(y)  # refitted on everything
    assert fused.dev_cross_entropy_["fused"] <= min(fused.dev_cross_entropy_["r"],
                                                   fused.dev_cross_entropy_["lr"]) + 1e-3
    with pytest.raises(ValueError, match="cv=12 folds .* do not exist"):
        FusionClassifier([("r", _Recorder())], cv=12).fit(X, y, groups=np.zeros(len(y)))


def test_equal_weighting_sums_the_members_calibrated_alone():
    from devicepool.estimators._linear_fusion import fit_linear_fusion

    X, y, groups = _synthetic(2, n_speakers=9)
    members = [("a", _member([0, 1])), ("c", _member([4, 5], LinearSVC()))]
    fused = FusionClassifier(members, selection=None, random_state=0).fit(X, y, groups=groups)
    learned = FusionClassifier(members, weighting="learned", selection=None,
                               random_state=0).fit(X, y, groups=groups)
    # same out-of-fold scores: recompute each member's own calibration from them
    from sklearn.model_selection import GroupKFold

    from devicepool.estimators.fusion import member_scores
    held = {n: np.empty((len(y), 4)) for n, _ in members}
    for tr, te in GroupKFold(3).split(X, y, groups):
        for n, m in members:
            held[n][te] = member_scores(clone(m).fit(X[tr], y[tr]), X[te], fused.classes_)
    dev = np.concatenate([te for _, te in GroupKFold(3).split(X, y, groups)])
    cal = [fit_linear_fusion([held[n][dev]], y[dev], 4, offset_ridge=fused.offset_ridge) for n, _ in members]
    np.testing.assert_allclose(fused.weights_, [a[0] for a, _ in cal], rtol=1e-6)
    np.testing.assert_allclose(fused.offsets_, cal[0][1] + cal[1][1], atol=1e-6)
    assert not np.allclose(learned.weights_, fused.weights_)


class _Noise(ClassifierMixin, BaseEstimator):
    """A member that knows nothing: random scores."""

    def fit(self, X, y, groups=None):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return np.random.default_rng(len(X)).normal(size=(len(X), len(self.classes_))) * 3


def test_greedy_selection_leaves_out_members_that_do_not_help():
    X, y, groups = _synthetic(1, n_speakers=12)
    members = [("a", _member([0, 1])), ("noise", _Noise()), ("c", _member([4, 5], LinearSVC()))]
    for weighting in ("equal", "learned"):
        fused = FusionClassifier(members, weighting=weighting, random_state=0).fit(X, y, groups=groups)
        assert "noise" not in fused.selected_ and fused.weights_[1] == 0
        assert list(fused.named_estimators_) == ["a", "c"]  # left out: not refitted, not run
        ce = fused.dev_cross_entropy_
        assert ce["fused"] <= min(ce[n] for n in ("a", "noise", "c")) + 1e-9
        every = FusionClassifier(members, weighting=weighting, selection=None,
                                 random_state=0).fit(X, y, groups=groups)
        assert every.selected_ == ["a", "noise", "c"] and every.weights_[1] != 0
    alone = FusionClassifier([("noise", _Noise()), ("a", _member([0, 1]))], random_state=0)
    alone.fit(X, y, groups=groups)  # the best member alone when no other helps
    assert alone.selected_ == ["a"] and alone.weights_[0] == 0
    calibrated_a = alone.weights_[1] * alone.member_scores(X)["a"] + alone.offsets_  # no noise in it
    np.testing.assert_array_equal(alone.predict(X), alone.classes_[calibrated_a.argmax(1)])


# ----------------------------------------------------------------------------- composition


class _Counted(TransformerMixin, BaseEstimator):
    """A stateless transformer (``requires_fit`` False) that counts the rows it transforms."""

    rows = []

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        type(self).rows.append(len(X))
        return np.asarray(X) * self.scale

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class _GroupsRecorder(_Recorder):
    __metadata_request__fit = {"groups": True}


def _shared_members():
    return [("a", make_pipeline(_Counted(), _member([0, 1]))), ("b", make_pipeline(_Counted(), _member([2, 3]))),
            ("c", make_pipeline(_Counted(2.0), _Recorder()))]


def test_members_with_the_same_stateless_first_step_share_its_features(monkeypatch):
    from devicepool.estimators import fusion

    X, y, groups = _synthetic(3, n_speakers=9)
    _Counted.rows.clear()
    # selection=None: every member is refitted and run (what this test counts)
    shared = FusionClassifier(_shared_members(), selection=None, random_state=0).fit(X, y, groups=groups)
    assert _Counted.rows == [len(y), len(y)]  # once per distinct step, on all of X, not per member and fold
    _Counted.rows.clear()
    proba = shared.predict_proba(X[:10])
    assert _Counted.rows == [10, 10]
    # bit for bit what fitting each pipeline whole gives
    monkeypatch.setattr(fusion, "_member_inputs", lambda members, X: ([None] * len(members), [X] * len(members)))
    _Counted.rows.clear()
    whole = FusionClassifier(_shared_members(), selection=None, random_state=0).fit(X, y, groups=groups)
    assert len(_Counted.rows) == 3 * 4 + 3 * 3  # every member: 3 folds + refit, and 3 held-out parts
    np.testing.assert_array_equal(whole.predict_proba(X[:10]), proba)
    np.testing.assert_array_equal(whole.weights_, shared.weights_)
    assert [type(s).__name__ for s in shared.estimators_[0].named_steps.values()] == ["_Counted", "Pipeline"]
    assert shared.estimators_[0].predict(X[:3]).shape == (3,)  # the members are whole fitted pipelines


def test_cv_takes_a_splitter_or_splits_and_int_cv_is_group_kfold():
    from sklearn.model_selection import GroupKFold

    X, y, groups = _synthetic(4, n_speakers=9)
    members = [("a", _member([0, 1])), ("b", _member([2, 3]))]
    by_int = FusionClassifier(members, random_state=0).fit(X, y, groups=groups)
    by_splitter = FusionClassifier(members, cv=GroupKFold(3), random_state=0).fit(X, y, groups=groups)
    splits = list(GroupKFold(3).split(X, y, groups))
    by_splits = FusionClassifier(members, cv=splits, random_state=0).fit(X, y, groups=groups)
    for other in (by_splitter, by_splits):
        np.testing.assert_array_equal(other.weights_, by_int.weights_)
        np.testing.assert_array_equal(other.predict_proba(X), by_int.predict_proba(X))
    with pytest.raises(ValueError, match="held-out parts"):
        FusionClassifier(members, cv=[splits[0], splits[0]]).fit(X, y, groups=groups)
    lacking = [(np.flatnonzero(y != 0), np.flatnonzero(y == 0))]
    with pytest.raises(ValueError, match="training part of cv fold 0 lacks a device"):
        FusionClassifier(members, cv=lacking).fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="cv"):
        FusionClassifier(members, cv="three").fit(X, y, groups=groups)


@pytest.mark.parametrize("routing", [False, True])
def test_groups_reach_members_with_metadata_routing_on_and_off(routing):
    import sklearn

    from devicepool.estimators import fit_with_groups

    X, y, groups = _synthetic(5, n_speakers=9)
    with sklearn.config_context(enable_metadata_routing=routing):
        pipe = make_pipeline(_Counted(), _GroupsRecorder())  # a Pipeline
        fit_with_groups(pipe, X, y, groups)
        assert pipe[-1].seen_groups_ == set(range(9))
        fused = make_pipeline(_Counted(), FusionClassifier(  # through the fusion, inside a Pipeline
            [("r", make_pipeline(_Counted(), _GroupsRecorder())), ("s", _GroupsRecorder())], selection=None,
            random_state=0))
        fit_with_groups(fused, X, y, groups)
        assert all(m[-1].seen_groups_ == set(range(9)) if hasattr(m, "steps") else m.seen_groups_ == set(range(9))
                   for m in fused[-1].estimators_)
        assert len(fused[-1].dev_accuracy_) == 3
        if routing:  # scikit-learn's own way routes them too
            fused.fit(X, y, groups=groups)
            assert fused[-1].estimators_[1].seen_groups_ == set(range(9))


def test_member_parameters_are_nested_parameters_of_the_fusion():
    f = FusionClassifier([("a", _member([0])), ("b", _Recorder())])
    params = f.get_params()
    assert params["a"] is f.estimators[0][1] and "a__logisticregression__C" in params
    f.set_params(a__logisticregression__C=0.5, cv=None)
    assert f.estimators[0][1][-1].C == 0.5 and f.cv is None
    assert sorted(clone(f).get_params(deep=False)) == sorted(
        ["estimators", "cv", "weighting", "selection", "validation_fraction", "refit", "ridge", "offset_ridge",
         "random_state"])
