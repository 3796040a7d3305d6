"""The classical systems: MFCC, MAP adaptation, Gaussian supervectors, GMM-UBM."""

import warnings

import numpy as np
import pytest
from scipy.fft import dct
from sklearn.base import clone
from sklearn.mixture import GaussianMixture

from devicepool._validation import InvalidParameterError
from devicepool.estimators import GaussianSupervector, GMMUBMClassifier, _gmm, make_gmm_ubm, make_gsv_svm
from devicepool.features import MFCC, FilterBank, deltas, mfcc, voicing_labels


def _bags(n=12, seed=0, width=3, shift=1.5):
    """Utterances of Gaussian frames, the class moving the mean (3 classes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = [rng.normal(loc=shift * y[i] * np.ones(width), size=(rng.integers(30, 90), width))
         .astype(np.float32) for i in range(n)]
    return X, y


# ----------------------------------------------------------------------------- MFCC


def test_mfcc_is_the_orthonormal_dct_with_htk_deltas():
    rng = np.random.default_rng(0)
    fb = rng.normal(size=(40, 24))
    out = mfcc(fb, n_mfcc=13, n_deltas=2, delta_width=2)
    c = dct(fb, type=2, axis=1, norm="ortho")[:, :13]
    np.testing.assert_allclose(out[:, :13], c, rtol=1e-5, atol=1e-5)
    # HTK: d[t] = sum_k k (c[t+k] - c[t-k]) / (2 sum k^2), at an inner frame
    t = 10
    d = sum(k * (c[t + k] - c[t - k]) for k in (1, 2)) / 10.0
    np.testing.assert_allclose(out[t, 13:26], d, rtol=1e-5, atol=1e-5)
    dd = deltas(deltas(c, 2), 2)
    np.testing.assert_allclose(out[:, 26:], dd, rtol=1e-4, atol=1e-4)


def test_deltas_of_a_ramp_are_its_slope_inside():
    ramp = (3.0 * np.arange(20.0))[:, None]
    d = deltas(ramp, width=2).ravel()
    np.testing.assert_allclose(d[2:-2], 3.0)
    assert d[0] < 3.0  # edges repeated


def test_mfcc_pipeline_equals_mfcc_with_its_own_filterbank():
    rng = np.random.default_rng(1)
    waves = [rng.normal(size=n) * 0.1 for n in (4000, 7000)]
    via_fbank = MFCC().transform(FilterBank().transform(waves))
    own = MFCC(filterbank=FilterBank()).transform(waves)
    for a, b in zip(via_fbank, own):
        assert a.shape == b.shape == (len(a), 40) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert list(MFCC(n_deltas=2).get_feature_names_out()[[0, 20, 40]]) == ["c00", "d_c00", "dd_c00"]


def _speech_with_pauses(seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(8000) / 16000
    tone = 0.3 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    quiet = 1e-5 * rng.normal(size=4000)
    return np.concatenate([quiet, tone, quiet])


@pytest.mark.parametrize("frames, kept", [("nonspeech", ("silence",)),
                                          ("speech", ("voiced", "unvoiced"))])
def test_mfcc_keeps_the_frames_the_voicing_labeller_names(frames, kept):
    wave = _speech_with_pauses()
    labels = voicing_labels(wave)
    keep = np.isin(labels, kept)
    assert 0 < keep.sum() < len(labels)
    out = MFCC(frames=frames, filterbank=FilterBank()).transform([wave])[0]
    whole = MFCC(filterbank=FilterBank()).transform([wave])[0]
    np.testing.assert_array_equal(out, whole[keep])  # deltas from the whole utterance


def test_mfcc_without_the_frames_asked_for_warns_and_keeps_all():
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 150 * t)
    with pytest.warns(UserWarning, match=r"no nonspeech frame in utterance 1; all their frames"):
        out = MFCC(frames="nonspeech", filterbank=FilterBank()).transform([_speech_with_pauses(), tone])
    assert len(out[1]) == FilterBank().n_frames(16000)


def test_mfcc_bad_parameters_and_inputs():
    fb = FilterBank().transform([np.random.default_rng(0).normal(size=4000)])
    with pytest.raises(ValueError, match="needs the waveforms"):
        MFCC(frames="nonspeech").transform(fb)
    with pytest.raises(ValueError, match="n_mfcc=30 is more than the input's 24 bands"):
        MFCC(n_mfcc=30).transform(fb)
    with pytest.raises(ValueError, match="n_mfcc=30 is more than the filterbank's 24 bands"):
        MFCC(n_mfcc=30, filterbank=FilterBank()).fit()
    with pytest.raises(InvalidParameterError, match="n_deltas"):
        MFCC(n_deltas=3).fit()
    with pytest.raises(InvalidParameterError, match="frames"):
        MFCC(frames="voiced").fit()
    with pytest.raises(ValueError, match="utterance 1: has 0 frames"):
        MFCC().transform([fb[0], np.zeros((0, 24))])
    with pytest.raises(ValueError, match=r"utterance 0.*shorter than one frame"):
        MFCC(frames="speech", filterbank=FilterBank()).transform([np.zeros(100)])


# ----------------------------------------------------------------------------- GMM arithmetic


@pytest.fixture(scope="module")
def ubm():
    X, _ = _bags()
    frames = np.concatenate(X).astype(np.float64)
    return GaussianMixture(4, covariance_type="diag", random_state=0).fit(frames), X


def test_map_adaptation_with_infinite_relevance_returns_the_ubm(ubm):
    gmm, X = ubm
    n, f = _gmm.utterance_stats(gmm, X)
    np.testing.assert_array_equal(_gmm.map_means(gmm.means_, n, f, np.inf),
                                  np.broadcast_to(gmm.means_, f.shape))
    np.testing.assert_allclose(_gmm.map_means(gmm.means_, n, f, 1e12),
                               np.broadcast_to(gmm.means_, f.shape), atol=1e-8)
    # r -> 0: the utterance's own (posterior-weighted) means where it has frames
    ml = _gmm.map_means(gmm.means_, n, f, 1e-9)
    used = n > 1e-3
    np.testing.assert_allclose(ml[used], (f / n[..., None])[used], rtol=1e-5)
    sv = _gmm.supervectors(gmm, n, f, np.inf)
    assert sv.shape == (len(X), 4 * 3) and not sv.any()


def test_statistics_and_densities_match_scikit_learn(ubm):
    gmm, X = ubm
    n, f = _gmm.utterance_stats(gmm, X)
    x2 = X[2].astype(np.float64)  # scikit-learn computes in the input's precision
    gamma = gmm.predict_proba(x2)
    np.testing.assert_allclose(n[2], gamma.sum(0), rtol=1e-8)
    np.testing.assert_allclose(f[2], gamma.T @ x2, rtol=1e-7, atol=1e-9)
    x0 = X[0].astype(np.float64)
    logp = _gmm.log_gaussians(x0, gmm.means_[None], gmm.covariances_, np.log(gmm.weights_))
    from scipy.special import logsumexp
    np.testing.assert_allclose(logsumexp(logp[:, 0], axis=1), gmm.score_samples(x0), rtol=1e-10)


def test_sample_frames_draws_without_replacement():
    rng = np.random.default_rng(0)
    X = [np.full((n, 2), i, dtype=np.float32) + np.arange(n)[:, None] * 1e-3 for i, n in
         enumerate((5, 50, 7))]
    out = _gmm.sample_frames(X, 20, np.random.default_rng(1))
    assert out.shape == (20, 2)
    assert len(np.unique(out, axis=0)) == 20
    every = {tuple(r) for u in X for r in u.astype(np.float64)}
    assert all(tuple(r) in every for r in out)
    assert _gmm.sample_frames(X, None, rng).shape == (62, 2)


# ----------------------------------------------------------------------------- supervectors


def test_supervectors_are_order_padding_and_chunk_invariant(monkeypatch):
    X, _ = _bags()
    gsv = GaussianSupervector(n_components=4, random_state=0).fit(X)
    full = gsv.transform(X)
    assert full.shape == (len(X), 4 * 3)
    # one utterance alone, or among others of any lengths, gives the same row
    np.testing.assert_allclose(gsv.transform([X[5]])[0], full[5], rtol=1e-10, atol=1e-12)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(gsv.transform([X[i] for i in perm]), full[perm], rtol=1e-10, atol=1e-12)
    # a bag of frames: their order within the utterance does not matter
    shuffled = X[3][np.random.default_rng(1).permutation(len(X[3]))]
    np.testing.assert_allclose(gsv.transform([shuffled])[0], full[3], rtol=1e-9, atol=1e-12)
    # nor how the frames are grouped into chunks for the vectorised pass
    monkeypatch.setattr(_gmm, "CHUNK_VALUES", 37 * 4)  # 37 frames of 4 components
    np.testing.assert_allclose(gsv.transform(X), full, rtol=1e-10, atol=1e-12)


def test_supervector_ubm_is_trained_on_at_most_ubm_frames_and_repeatable():
    X, _ = _bags()
    a = GaussianSupervector(n_components=3, ubm_frames=100, random_state=0).fit(X)
    b = clone(a).fit(X)
    assert a.n_ubm_frames_ == 100
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    # without the KL normalisation: the adapted means themselves, stacked
    raw = GaussianSupervector(n_components=3, normalize=False, random_state=0).fit(X)
    n, f = _gmm.utterance_stats(raw.ubm_, X)
    np.testing.assert_allclose(raw.transform(X),
                               _gmm.map_means(raw.ubm_.means_, n, f, 16.0).reshape(len(X), -1),
                               rtol=1e-12)


def test_supervector_bad_inputs():
    X, _ = _bags()
    with pytest.raises(InvalidParameterError, match="relevance"):
        GaussianSupervector(relevance=0).fit(X)
    with pytest.raises(ValueError, match="cannot fit a UBM of n_components=5000"):
        GaussianSupervector(n_components=5000).fit(X)
    gsv = GaussianSupervector(n_components=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 4 features, but GaussianSupervector is expecting 3"):
        gsv.transform([np.zeros((5, 4))])
    with pytest.raises(ValueError, match="utterance 1: contains NaN"):
        gsv.transform([X[0], np.full((3, 3), np.nan)])


def test_gsv_svm_separates_devices():
    X, y = _bags(n=30, shift=0.8)
    pipe = make_gsv_svm(0, n_components=4)
    fitted = make_gsv_svm(0, n_components=4, n_mfcc=3, n_deltas=0)
    # the recipe's MFCC step reads 24-band filterbanks; here the frames are 3-D already
    fitted.steps[0] = ("mfcc", "passthrough")
    fitted.fit(X[:21], y[:21])
    assert fitted.score(X[21:], y[21:]) == 1.0
    assert [name for name, _ in pipe.steps] == ["mfcc", "gsv", "svm"]


# ----------------------------------------------------------------------------- GMM-UBM


def test_gmm_ubm_scores_are_frame_averaged_log_likelihood_ratios():
    X, y = _bags(n=18)
    clf = GMMUBMClassifier(n_components=3, random_state=0).fit(X, y, groups=np.arange(18) // 3)
    assert clf.means_.shape == (3, 3, 3)
    scores = clf.llr_scores(X[:4])
    for c in range(3):
        model = clone(clf.ubm_)
        for attr in ("weights_", "covariances_", "precisions_cholesky_"):
            setattr(model, attr, getattr(clf.ubm_, attr))
        model.means_ = clf.means_[c]
        for i in range(4):
            xi = X[i].astype(np.float64)
            want = np.mean(model.score_samples(xi) - clf.ubm_.score_samples(xi))
            assert scores[i, c] == pytest.approx(want, rel=1e-9, abs=1e-12)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])
    a, b = clf.calibration_
    np.testing.assert_allclose(clf.decision_function(X), a * clf.llr_scores(X) + b, rtol=1e-12)
    assert a > 0
    assert clf.score(X, y) == 1.0


def test_gmm_ubm_device_model_is_the_map_of_its_pooled_statistics():
    X, y = _bags(n=9)
    clf = GMMUBMClassifier(n_components=2, relevance=4.0, random_state=0).fit(X, y)
    n, f = _gmm.utterance_stats(clf.ubm_, X)
    want = _gmm.map_means(clf.ubm_.means_, n[y == 1].sum(0), f[y == 1].sum(0), 4.0)
    np.testing.assert_allclose(clf.means_[1], want, rtol=1e-10)
    # weight 2 counts an utterance's statistics twice
    w = np.ones(9)
    w[1] = 2.0
    weighted = GMMUBMClassifier(n_components=2, relevance=4.0, random_state=0).fit(X, y, sample_weight=w)
    want = _gmm.map_means(clf.ubm_.means_, n[y == 1].sum(0) + n[1], f[y == 1].sum(0) + f[1], 4.0)
    np.testing.assert_allclose(weighted.means_[1], want, rtol=1e-10)


def test_gmm_ubm_errors_and_fallbacks():
    X, y = _bags(n=3)
    with pytest.warns(UserWarning, match="too few utterances .* per device for 3 calibration folds"):
        clf = GMMUBMClassifier(n_components=2, random_state=0).fit(X, y)
    assert clf.calibration_[0] == 1.0
    X, y = _bags(n=6)
    with pytest.raises(ValueError, match="groups must have one entry per utterance"):
        GMMUBMClassifier(n_components=2).fit(X, y, groups=[0, 1])
    with pytest.raises(ValueError, match="X has 6 utterances but y has 5 labels"):
        GMMUBMClassifier(n_components=2).fit(X, y[:5])
    with pytest.raises(ValueError, match="at least 2 classes"):
        GMMUBMClassifier(n_components=2).fit(X, np.zeros(6))
    with pytest.raises(InvalidParameterError, match="calibration_folds"):
        GMMUBMClassifier(calibration_folds=1).fit(X, y)
    with pytest.raises(ValueError, match="labels not seen in fit"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GMMUBMClassifier(n_components=2, random_state=0).fit(X, y).score(X, y + 7)


def test_gmm_ubm_recipe_takes_speakers_through_the_pipeline():
    from devicepool.estimators._routing import groups_fit_params

    pipe = make_gmm_ubm(0)
    assert groups_fit_params(pipe, [1, 2]) == {"gmm__groups": [1, 2]}
    assert groups_fit_params(pipe, None) == {}
    assert groups_fit_params(make_gsv_svm(0), [1]) == {}
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):  # the GMM requests them itself
        assert groups_fit_params(pipe, [1, 2]) == {"groups": [1, 2]}
        assert groups_fit_params(make_gsv_svm(0), [1]) == {}


def test_forensic_protocol_refuses_a_model_without_embeddings_before_any_fit():
    from devicepool.datasets import make_device_corpus
    from devicepool.protocol import run_forensic_protocol

    corpus = make_device_corpus(n_devices=6, n_speakers=2, n_utterances=1, modes="neutral",
                                random_state=0)
    with pytest.raises(ValueError, match="model 'gmm_ubm' has no transform: the forensic"):
        run_forensic_protocol(corpus, model="gmm_ubm", progress=False)
