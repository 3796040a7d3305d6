"""The forensic validation protocol (devicepool.protocol.forensic): device- and
speaker-disjoint folds, the measures, the files, reproducibility."""

import json
import os

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from devicepool.datasets import make_device_corpus
from devicepool.protocol import (
    ForensicResult,
    OutputLockedError,
    fit_forensic,
    forensic_splits,
    register_model,
    run_forensic_protocol,
    unregister_model,
)
from devicepool.protocol.lock import output_lock

MEASURES = ("cllr", "cllr_min", "cllr_cal", "eer", "misleading_h1", "misleading_h2", "known_accuracy", "unknown_rejection", "far",
            "known_rejection", "closed_set_accuracy")


class MeanStdEmbedder(ClassifierMixin, BaseEstimator):
    """Per-band mean and std (48 values) as embedding, logistic regression on it; it
    records what it was fitted on."""

    fitted = []  # (devices, speakers) of every fit, in order

    def __init__(self, random_state=None):
        self.random_state = random_state

    @staticmethod
    def _stats(X):
        return np.stack([np.r_[np.mean(u, 0), np.std(u, 0)] for u in X])

    def fit(self, X, y, groups=None):
        self.clf_ = LogisticRegression(max_iter=2000).fit(self._stats(X), y)
        self.classes_ = self.clf_.classes_
        MeanStdEmbedder.fitted.append((set(map(str, y)), set(map(str, groups))))
        return self

    def transform(self, X):
        return self._stats(X)

    def predict_proba(self, X):
        return self.clf_.predict_proba(self._stats(X))


@pytest.fixture
def embedder():
    register_model("meanstd_embedder", MeanStdEmbedder, feature="fbank")
    MeanStdEmbedder.fitted = []
    yield "meanstd_embedder"
    unregister_model("meanstd_embedder")


@pytest.fixture(scope="module")
def corpus():
    return make_device_corpus(n_devices=6, n_speakers=4, n_utterances=2, modes=("neutral",),
                              random_state=0)


@pytest.fixture(scope="module")
def corpus_two_modes():
    return make_device_corpus(n_devices=6, n_speakers=4, n_utterances=2, random_state=0)


def _finite_measures(result):
    for m in MEASURES:
        stats = result.summary[m]
        assert np.isfinite(stats["mean"]) and np.isfinite(stats["std"]) and stats["std"] >= 0
        assert len(stats["values"]) == len(result.folds)
        assert stats["std"] == pytest.approx(np.std(stats["values"]))  # population std
        if m not in ("cllr", "cllr_cal"):
            assert 0.0 <= stats["mean"] <= 1.0 + 1e-12, m


def test_folds_are_device_and_speaker_disjoint_as_recorded(corpus, embedder):
    res = run_forensic_protocol(corpus, model=embedder, progress=False)
    devices, speakers = set(map(str, corpus.target)), set(map(str, corpus.groups))
    assert len(res.folds) == 3
    unseen_all = []
    for f, (fit_devices, fit_speakers) in zip(res.folds, MeanStdEmbedder.fitted):
        unseen, seen = set(f["unseen_devices"]), set(f["seen_devices"])
        cal, test = set(f["calibration_speakers"]), set(f["test_speakers"])
        assert not unseen & seen and unseen | seen == devices and len(unseen) == 2
        assert not cal & test and cal | test == speakers and len(cal) == len(test) == 2
        # the network heard the seen devices of the calibration speakers, nothing else
        assert fit_devices == seen and fit_speakers == cal
        assert f["n_train"] == 4 * 2 * 2  # seen devices x calibration speakers x utterances
        # test pairs: 2 unseen devices x 2 test speakers x 2 utterances = 8 questioned,
        # each against the 2 recordings of the other test speaker on each device
        assert (f["lr"]["n_same"], f["lr"]["n_diff"]) == (16, 16)
        assert f["n_calibration_pairs"] == [16, 16]
        assert (f["open_set"]["n_known"], f["open_set"]["n_unknown"]) == (16, 8)
        unseen_all += sorted(unseen)
    assert sorted(unseen_all) == sorted(devices)  # every device unseen exactly once


def test_measures_present_finite_and_pooled_pairs(corpus, embedder):
    res = run_forensic_protocol(corpus, model=embedder, far=0.25, progress=False)
    assert isinstance(res, ForensicResult)
    _finite_measures(res)
    assert res.llr.shape == res.y.shape == (96,) and np.all(np.isfinite(res.llr))
    assert res.pooled["n_same"] == 48 and set(np.unique(res.y)) == {0, 1}
    for f in res.folds:
        assert f["open_set"]["far_calibration"] <= 0.25
        assert f["open_set"]["far"] == pytest.approx(1 - f["open_set"]["unknown_rejection"])
    assert res.settings["system"]["far"] == 0.25 and res.settings["torch_threads"] >= 1
    assert "Cllr_min" in res.to_markdown() and "no cross-mode" in res.notes[0]


def test_same_seed_same_numbers_other_seed_other_folds(corpus, embedder):
    a = run_forensic_protocol(corpus, model=embedder, progress=False, random_state=3)
    b = run_forensic_protocol(corpus, model=embedder, progress=False, random_state=3)
    c = run_forensic_protocol(corpus, model=embedder, progress=False, random_state=4)
    assert a.summary == b.summary and np.array_equal(a.llr, b.llr)
    assert [f["unseen_devices"] for f in a.folds] == [f["unseen_devices"] for f in b.folds]
    assert ([(f["unseen_devices"], f["test_speakers"]) for f in a.folds]
            != [(f["unseen_devices"], f["test_speakers"]) for f in c.folds])


def test_systems_compared_on_the_same_fits(corpus, embedder):
    fits = fit_forensic(corpus, model=embedder, progress=False)
    plda = fits.evaluate()
    cosine = fits.evaluate(scoring="cosine", calibration="isotonic", lda_dim="auto", n_references=1)
    assert len(MeanStdEmbedder.fitted) == 3  # one fit per fold, whatever is evaluated
    assert [f["unseen_devices"] for f in plda.folds] == [f["unseen_devices"] for f in cosine.folds]
    assert not np.array_equal(plda.llr, cosine.llr)
    assert cosine.settings["system"]["scoring"] == "cosine"
    _finite_measures(cosine)


def test_files_written_under_the_lock(corpus, embedder, tmp_path):
    out = tmp_path / "forensic"
    res = run_forensic_protocol(corpus, model=embedder, progress=False, out_dir=out)
    data = json.loads((out / "forensic.json").read_text())
    assert data["summary"]["eer"]["mean"] == pytest.approx(res.summary["eer"]["mean"])
    assert data["folds"][0]["unseen_devices"] == res.folds[0]["unseen_devices"]
    assert data["n_pairs"] == len(res.y)
    assert "| fold | unseen devices" in (out / "forensic.md").read_text()
    with np.load(out / "llr.npz") as z:
        assert np.array_equal(z["llr"], res.llr) and np.array_equal(z["y"], res.y)
    assert (out / ".lock").exists() and (out / "cache").is_dir()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    with output_lock(out), pytest.raises(OutputLockedError, match="in use by another run"):
        run_forensic_protocol(corpus, model=embedder, progress=False, out_dir=out)


def test_plots_written(corpus, embedder, tmp_path):
    pytest.importorskip("matplotlib")
    res = run_forensic_protocol(corpus, model=embedder, progress=False, out_dir=tmp_path)
    for name in ("tippett.png", "det.png", "ece.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert res.paths[name] == str(tmp_path / name)


def test_cross_mode_measures_with_both_modes(corpus_two_modes, embedder):
    res = run_forensic_protocol(corpus_two_modes, model=embedder, progress=False)
    f = res.folds[0]
    assert f["cross_mode"]["questioned_mode"] == "whisper"
    assert f["cross_mode"]["reference_mode"] == "neutral"
    for key in ("matched_eer", "mismatched_eer", "mismatched_cllr", "mismatched_open_known_accuracy",
                "mismatched_open_unknown_rejection"):
        assert np.isfinite(res.summary[key]["mean"])
    # the network was trained on neutral speech only
    assert f["n_train"] == 4 * 2 * 2
    assert "cross-mode, mismatched" in res.to_markdown()


def test_da_cnn_embedder_end_to_end(corpus):
    res = run_forensic_protocol(corpus, model_params={"max_epochs": 2}, progress=False)
    _finite_measures(res)
    assert res.settings["model"] == "da_cnn" and res.settings["model_params"] == {"max_epochs": 2}
    assert all(f["train_plan"]["epochs"] == 2 for f in res.folds)


def test_splits_are_deterministic_and_checked():
    devices = np.repeat(list("abcdefgh"), 4)
    speakers = np.tile(list("wxyz"), 8)
    a = forensic_splits(devices, speakers, n_splits=4, random_state=1)
    assert a == forensic_splits(devices, speakers, n_splits=4, random_state=1)
    assert all(len(s.unseen_devices) == 2 and len(s.seen_devices) == 6 for s in a)
    with pytest.raises(ValueError, match="at least 10 devices"):
        forensic_splits(devices, speakers, n_splits=5)
    with pytest.raises(ValueError, match="at least 4 speakers"):
        forensic_splits(devices, np.tile(list("xyz"), 32)[:32])
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        forensic_splits(devices, speakers, n_splits=1)


def test_argument_errors(corpus):
    with pytest.raises(ValueError, match="no whisper speech"):
        run_forensic_protocol(corpus, mode="whisper", progress=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        run_forensic_protocol(corpus, mode="shout", progress=False)
    with pytest.raises(TypeError, match="model_params must be a dict"):
        run_forensic_protocol(corpus, model_params=[("max_epochs", 2)], progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        run_forensic_protocol(corpus, model="resnet", progress=False)


# ----------------------------------------------------------------------------- one engine, one build rule


@pytest.mark.parametrize("model", ["dft_cnn", "sa_cnn", "da_cnn", "gsv_svm", "gmm_ubm", "pretrained_lr", "fusion"])
def test_fold_fits_of_the_default_models_are_built_as_before(model):
    """The engine builds a fold's network with ``spec.make_classifier`` (the sample-rate
    rule). Every default model the forensic protocol accepts gets the estimator 0.5's
    ``spec.factory(...)`` built (same parameters: same figures); the waveform models, the
    only ones the rule changes, are refused before any fit."""
    from devicepool.protocol import get_model

    spec = get_model(model)
    made, old = spec.make_classifier(8000, random_state=3), spec.factory(random_state=3)
    accepted = hasattr(made, "transform") and hasattr(made, "predict_proba")
    if spec.feature == "waveform":
        assert not accepted
    else:
        assert repr(made.get_params(deep=False)) == repr(old.get_params(deep=False))


class RateEmbedder(MeanStdEmbedder):
    """A waveform embedder that records the sample rate it was built with."""

    rates = []

    def __init__(self, random_state=None, sample_rate=16000):
        self.random_state = random_state
        self.sample_rate = sample_rate

    @staticmethod
    def _stats(X):
        return np.stack([[np.mean(u), np.std(u)] for u in X])

    def fit(self, X, y, groups=None):
        RateEmbedder.rates.append(self.sample_rate)
        return super().fit(X, y, groups)


def test_a_waveform_model_is_fitted_at_the_corpus_sample_rate():
    """The drift fix: 0.5 probed the model with the corpus's sample rate but fitted the
    folds with the factory's default; both now go through ``make_classifier``."""
    register_model("rate_embedder", RateEmbedder, feature="waveform")
    RateEmbedder.rates = []
    try:
        corpus = make_device_corpus(n_devices=4, n_speakers=4, n_utterances=2, modes=("neutral",),
                                    sample_rate=8000, random_state=0)
        fits = fit_forensic(corpus, model="rate_embedder", n_splits=2, progress=False)
    finally:
        unregister_model("rate_embedder")
    assert RateEmbedder.rates == [8000, 8000] and len(fits.outputs) == 2
