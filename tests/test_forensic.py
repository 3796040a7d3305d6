"""Tests of devicepool.forensic: LR metrics, scorers, calibrators, DeviceLR, open set, plots."""

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from devicepool._validation import InvalidParameterError
from devicepool.forensic import (
    UNKNOWN,
    CosineScorer,
    DeviceLR,
    IsotonicCalibrator,
    LogisticCalibrator,
    OpenSetClassifier,
    PLDAScorer,
    cllr,
    cllr_cal,
    cllr_min,
    det_data,
    ece_data,
    eer,
    tippett_data,
)
from devicepool.forensic._pairs import make_pairs

LN10 = np.log(10.0)


# --------------------------------------------------------------------------- data

def calibrated_llrs(sigma, n=4000, seed=0):
    """Perfectly calibrated log10 LRs: natural log LR ~ N(+-sigma^2 / 2, sigma^2)."""
    rng = np.random.default_rng(seed)
    h1 = rng.normal(sigma**2 / 2, sigma, n)
    h2 = rng.normal(-sigma**2 / 2, sigma, n)
    return np.r_[h1, h2] / LN10, np.r_[np.ones(n, int), np.zeros(n, int)]


def gaussian_scores(d, n=2000, seed=0):
    """Scores of H1 ~ N(d, 1) and H2 ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(d, 1, n), rng.normal(0, 1, n)], np.r_[np.ones(n, int), np.zeros(n, int)]


def device_embeddings(n_devices, n_speakers=5, per_cell=3, dim=12, seed=0, spread=1.5):
    """Embeddings = device mean + speaker offset + noise; returns E, devices, speakers."""
    rng = np.random.default_rng(seed)
    device_means = rng.normal(size=(n_devices, dim)) * spread
    speaker_means = rng.normal(size=(n_speakers, dim)) * 0.5
    dev = np.repeat(np.arange(n_devices), n_speakers * per_cell)
    spk = np.tile(np.repeat(np.arange(n_speakers), per_cell), n_devices)
    E = device_means[dev] + speaker_means[spk] + rng.normal(size=(len(dev), dim))
    return E, np.array([f"dev{seed}-{d}" for d in dev]), spk


@pytest.fixture(scope="module")
def splits():
    """Background, calibration and test embeddings of three disjoint sets of devices."""
    return {name: device_embeddings(n, seed=seed)
            for name, n, seed in [("background", 30, 1), ("calibration", 10, 2), ("test", 10, 3)]}


# --------------------------------------------------------------------------- metrics

def test_cllr_of_calibrated_llrs_is_near_cllr_min():
    llr, y = calibrated_llrs(sigma=2.0)
    c, cmin = cllr(llr, y), cllr_min(llr, y)
    assert 0 <= cmin <= c
    assert c - cmin < 0.02
    assert cllr_cal(llr, y) == pytest.approx(c - cmin)


def test_cllr_of_very_separated_calibrated_llrs_is_near_zero():
    llr, y = calibrated_llrs(sigma=8.0)
    assert cllr(llr, y) < 0.02
    assert cllr_min(llr, y) < 0.02


def test_cllr_of_neutral_system_is_one():
    y = np.r_[np.ones(7, int), np.zeros(3, int)]
    assert cllr(np.zeros(10), y) == 1.0
    assert cllr_min(np.zeros(10), y) == pytest.approx(1.0)
    assert cllr_cal(np.zeros(10), y) == pytest.approx(0.0)


def test_cllr_by_hand_and_stable_for_huge_llrs():
    assert cllr([1.0, -1.0], [1, 0]) == pytest.approx(np.log2(1.1))
    # 10**400 overflows; the cost of a misleading log10 LR of -400 is 400 log2(10) / 2
    assert cllr([-400.0, -400.0], [1, 0]) == pytest.approx(0.5 * 400 * np.log2(10), rel=1e-12)


def test_cllr_min_depends_only_on_the_order_of_the_llrs():
    llr, y = calibrated_llrs(sigma=1.5, n=500)
    assert cllr_min(3 * llr + 1, y) == pytest.approx(cllr_min(llr, y), abs=1e-12)
    assert cllr(3 * llr + 1, y) > cllr(llr, y) + 0.1  # miscalibrated
    assert cllr_cal(3 * llr + 1, y) > 0.1


def test_cllr_min_of_perfect_separation_is_zero():
    assert cllr_min([5.0, 3.0, -1.0, -2.0], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize("d", [1.0, 2.0, 3.0])
def test_eer_of_two_unit_gaussians_is_analytic(d):
    s, y = gaussian_scores(d, n=20000, seed=int(d))
    rate, threshold = eer(s, y, return_threshold=True)
    assert rate == pytest.approx(norm.cdf(-d / 2), abs=0.01)
    assert threshold == pytest.approx(d / 2, abs=0.05)
    assert eer(s, y) == rate


def test_eer_of_separated_scores_is_zero():
    assert eer([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]) == 0.0


def test_ece_data_matches_cllr_at_even_prior_and_pav_is_lowest():
    llr, y = calibrated_llrs(sigma=2.0, n=800)
    llr = 2 * llr - 0.5  # miscalibrated
    d = ece_data(llr, y)
    assert d.prior_log_odds.shape == d.system.shape == d.calibrated.shape == d.reference.shape == (51,)
    mid = 25
    assert d.prior_log_odds[mid] == pytest.approx(0.0)
    assert d.system[mid] == pytest.approx(cllr(llr, y))
    assert d.calibrated[mid] == pytest.approx(cllr_min(llr, y))
    assert d.reference[mid] == pytest.approx(1.0)
    assert np.all(d.calibrated <= d.system + 1e-9)
    assert np.all(d.calibrated <= d.reference + 1e-9)
    np.testing.assert_allclose(d.reference, d.reference[::-1])  # symmetric in the prior


def test_tippett_and_det_data():
    llr, y = calibrated_llrs(sigma=2.0, n=300)
    t = tippett_data(llr, y)
    assert t.h1[0] == 1.0 and t.h2[0] == 1.0
    assert np.all(np.diff(t.h1) <= 0) and np.all(np.diff(t.h2) <= 0)
    assert t.h1[np.searchsorted(t.llr, 0.0)] > 0.5 > t.h2[np.searchsorted(t.llr, 0.0)]
    d = det_data(llr, y)
    assert d.fpr.shape == d.fnr.shape == d.thresholds.shape
    assert np.all((d.fpr >= 0) & (d.fpr <= 1) & (d.fnr >= 0) & (d.fnr <= 1))


@pytest.mark.parametrize("func", [cllr, cllr_min, eer, tippett_data, det_data, ece_data])
@pytest.mark.parametrize("llr, y, message", [
    ([0.1, 0.2, 0.3], [1, 0], "same length"),
    ([0.1, 0.2, 0.3], [1, 1, 1], "both hypotheses"),
    ([0.1, 0.2], [0, 0], "both hypotheses.*only H2"),
    ([], [], "both hypotheses"),
    ([0.1, np.nan, 0.3], [1, 0, 1], "must be finite; trial 1"),
    ([0.1, np.inf], [1, 0], "must be finite"),
    ([0.1, 0.2, 0.3], [1, 0, 2], r"1 \(H1, same device\) or 0"),
    ([0.1, 0.2], ["a", "b"], r"1 \(H1, same device\) or 0"),
    ([[0.1, 0.2]], [1, 0], "1-D"),
])
def test_metric_input_errors_name_the_rule(func, llr, y, message):
    with pytest.raises(ValueError, match=message):
        func(llr, y)


def test_boolean_labels_are_accepted():
    assert cllr([1.0, -1.0], [True, False]) == cllr([1.0, -1.0], [1, 0])


# --------------------------------------------------------------------------- calibrators

@pytest.mark.parametrize("Cal", [LogisticCalibrator, IsotonicCalibrator])
def test_calibrators_are_near_optimal_on_held_out_data(Cal):
    s, y = gaussian_scores(2.0, n=3000, seed=0)
    s_test, y_test = gaussian_scores(2.0, n=3000, seed=1)
    llr = Cal().fit(s, y).transform(s_test)
    # the true log10 LR of N(2, 1) against N(0, 1) is (2 s - 2) / ln 10
    true = (2 * s_test - 2) / LN10
    assert cllr(llr, y_test) < cllr(true, y_test) + 0.02
    assert cllr(llr, y_test) < 0.6


def test_logistic_calibrator_recovers_the_analytic_map():
    s, y = gaussian_scores(2.0, n=20000, seed=2)
    cal = LogisticCalibrator(C=1e4).fit(s, y)
    assert cal.coef_ == pytest.approx(2 / LN10, rel=0.05)
    assert cal.intercept_ == pytest.approx(-2 / LN10, abs=0.05)
    assert cal.prior_log_odds_ == 0.0


def test_logistic_calibrator_ignores_the_class_proportions():
    """Balanced weights: the LR does not absorb the prior odds of the calibration data."""
    s, y = gaussian_scores(2.0, n=20000, seed=3)
    keep = np.r_[np.arange(20000)[:2000], np.arange(20000, 40000)]  # 1 : 10
    cal = LogisticCalibrator(C=1e4).fit(s[keep], y[keep])
    assert cal.prior_log_odds_ == pytest.approx(-1.0)
    assert cal.transform([1.0])[0] == pytest.approx(0.0, abs=0.08)


def test_isotonic_calibrator_bounds_and_monotonicity():
    s, y = gaussian_scores(3.0, n=200, seed=4)
    cal = IsotonicCalibrator().fit(s, y)
    assert cal.llr_bounds_ == (-np.log10(200), np.log10(200))
    grid = np.linspace(-10, 15, 400)
    llr = cal.transform(grid)
    assert np.all(np.isfinite(llr))
    assert np.all(np.diff(llr) >= 0)
    assert llr[0] == cal.llr_bounds_[0] and llr[-1] == cal.llr_bounds_[1]


def test_isotonic_and_logistic_agree_on_average():
    s, y = gaussian_scores(1.5, n=5000, seed=5)
    grid = np.linspace(0.0, 1.5, 7)
    iso = IsotonicCalibrator().fit(s, y).transform(grid)
    log = LogisticCalibrator().fit(s, y).transform(grid)
    np.testing.assert_allclose(iso, log, atol=0.15)


def test_logistic_calibrator_swapped_labels_give_reciprocal_lrs():
    s, y = gaussian_scores(1.0, n=500, seed=6)
    grid = np.linspace(-2, 3, 11)
    a = LogisticCalibrator().fit(s, y).transform(grid)
    b = LogisticCalibrator().fit(s, 1 - y).transform(grid)
    np.testing.assert_allclose(b, -a, atol=1e-4)


@pytest.mark.parametrize("Cal", [LogisticCalibrator, IsotonicCalibrator])
def test_calibrators_swapped_hypotheses_and_negated_scores_give_reciprocal_lrs(Cal):
    s, y = gaussian_scores(1.0, n=500, seed=7)
    grid = np.linspace(-2, 3, 11)
    a = Cal().fit(s, y).transform(grid)
    b = Cal().fit(-s, 1 - y).transform(-grid)
    np.testing.assert_allclose(b, -a, atol=1e-4)


@pytest.mark.parametrize("Cal", [LogisticCalibrator, IsotonicCalibrator])
def test_calibrator_errors(Cal):
    with pytest.raises(ValueError, match="both hypotheses"):
        Cal().fit([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        Cal().fit([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(NotFittedError):
        Cal().transform([0.1])
    with pytest.raises(ValueError, match="finite"):
        Cal().fit([0.1, 0.2], [1, 0]).transform([np.nan])


def test_logistic_calibrator_parameter_constraint():
    with pytest.raises(InvalidParameterError,
                       match=r"The 'C' parameter of LogisticCalibrator must be a float in the range \(0, inf\); got 0"):
        LogisticCalibrator(C=0).fit([0.1, 0.2], [1, 0])


# --------------------------------------------------------------------------- scorers

def same_and_other_device_scores(scorer, E, dev, spk, n_ref=3):
    """Score every utterance of all devices but the last against 3 references of its own
    device and of the next device, all by other speakers."""
    scores, labels = [], []
    devices = np.unique(dev)
    for k, d in enumerate(devices[:-1]):
        for i in np.flatnonzero(dev == d):
            for other, label in [(d, 1), (devices[k + 1], 0)]:
                refs = np.flatnonzero((dev == other) & (spk != spk[i]))[:n_ref]
                scores.append(scorer.score(E[i:i + 1], E[refs])[0])
                labels.append(label)
    return np.array(scores), np.array(labels)


@pytest.mark.parametrize("Scorer", [CosineScorer, PLDAScorer])
@pytest.mark.parametrize("lda_dim", [None, 10])
def test_scorers_rank_same_device_above_other_devices(Scorer, lda_dim, splits):
    Eb, db, _ = splits["background"]
    E, dev, spk = splits["test"]
    scorer = Scorer(lda_dim=lda_dim).fit(Eb, db)
    s, y = same_and_other_device_scores(scorer, E, dev, spk)
    assert eer(s, y) < 0.12  # measured 0.067-0.089 (270 trials per hypothesis)
    assert s[y == 1].mean() > s[y == 0].mean()


def test_plda_score_is_the_closed_form_gaussian_llr(splits):
    Eb, db, _ = splits["background"]
    scorer = PLDAScorer().fit(Eb, db)
    Z = scorer.transform(splits["test"][0][:6])
    x, r, n = Z[0], Z[1:5].mean(axis=0), 4
    # W and B in the preprocessed space, from y = (z - mu) @ P with W_y = I, B_y = diag(b)
    P_inv = np.linalg.inv(scorer.projection_)
    W = P_inv.T @ P_inv
    B = P_inv.T @ np.diag(scorer.between_) @ P_inv
    d = len(x)
    zero = np.zeros((d, d))
    same = multivariate_normal(np.zeros(2 * d), np.block([[B + W, B], [B, B + W / n]]))
    diff = multivariate_normal(np.zeros(2 * d), np.block([[B + W, zero], [zero, B + W / n]]))
    v = np.r_[x - scorer.model_mean_, r - scorer.model_mean_]
    expected = same.logpdf(v) - diff.logpdf(v)
    assert scorer.score_transformed(x[None], r[None], n)[0] == pytest.approx(expected, rel=1e-8)
    assert scorer.score(splits["test"][0][:1], splits["test"][0][1:5])[0] == pytest.approx(expected)


@pytest.mark.parametrize("Scorer", [CosineScorer, PLDAScorer])
def test_score_pairs_matches_score(Scorer, splits):
    Eb, db, _ = splits["background"]
    E = splits["test"][0]
    scorer = Scorer().fit(Eb, db)
    sets = [E[10:13], E[20:21], E[30:35]]
    paired = scorer.score_pairs(E[:3], sets)
    single = [scorer.score(E[i:i + 1], sets[i])[0] for i in range(3)]
    np.testing.assert_allclose(paired, single, rtol=1e-10)
    assert scorer.score(E[:7], E[10:13]).shape == (7,)


def test_scorer_errors(splits):
    Eb, db, _ = splits["background"]
    with pytest.raises(ValueError, match=r"lda_dim=40 exceeds min\(n_devices - 1, n_features\) = 12"):
        PLDAScorer(lda_dim=40).fit(Eb, db)
    with pytest.raises(InvalidParameterError, match="The 'lda_dim' parameter of CosineScorer"):
        CosineScorer(lda_dim=0).fit(Eb, db)
    with pytest.raises(ValueError, match="at least 2 devices"):
        CosineScorer().fit(Eb, np.zeros(len(Eb)))
    with pytest.raises(ValueError, match="one label per utterance"):
        CosineScorer().fit(Eb, db[:-1])
    with pytest.raises(ValueError, match="two or more embeddings"):
        PLDAScorer().fit(Eb[:3], ["a", "b", "c"])
    bad = Eb.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="utterance 4: .*NaN or infinite"):
        CosineScorer().fit(bad, db)
    scorer = CosineScorer().fit(Eb, db)
    with pytest.raises(ValueError, match="has 5 features, but 12 were seen in fit"):
        scorer.score(Eb[:1, :5], Eb[1:3, :5])
    with pytest.raises(ValueError, match="one reference set per questioned"):
        scorer.score_pairs(Eb[:2], [Eb[2:4]])


# --------------------------------------------------------------------------- pairs

def test_pairs_references_are_by_other_speakers_of_one_device():
    _, dev, spk = device_embeddings(4, n_speakers=3, per_cell=2)
    pairs = make_pairs(dev, spk, n_references=3, max_pairs=50, rng=np.random.default_rng(0))
    assert pairs.y.sum() == 50 and (pairs.y == 0).sum() == 50
    for i, q in enumerate(pairs.questioned):
        refs = pairs.ref_index[pairs.ref_ptr[i]:pairs.ref_ptr[i + 1]]
        assert 1 <= len(refs) <= 3 and len(set(refs)) == len(refs)
        assert np.all(spk[refs] != spk[q])
        assert len(set(dev[refs])) == 1
        assert (dev[refs[0]] == dev[q]) == bool(pairs.y[i])


def test_pairs_with_single_references_enumerate_a_small_universe_exactly():
    _, dev, spk = device_embeddings(3, n_speakers=2, per_cell=2)  # 12 utterances
    pairs = make_pairs(dev, spk, n_references=1, max_pairs=10**6, rng=np.random.default_rng(0))
    combos = set(zip(pairs.questioned.tolist(), pairs.ref_index.tolist()))
    assert len(combos) == len(pairs.y)
    expected_same = sum(((dev == dev[i]) & (spk != spk[i])).sum() for i in range(12))
    expected_diff = sum(((dev != dev[i]) & (spk != spk[i])).sum() for i in range(12))
    assert pairs.y.sum() == expected_same == 12 * 2
    assert (pairs.y == 0).sum() == expected_diff == 12 * 4


# --------------------------------------------------------------------------- DeviceLR

@pytest.fixture(scope="module")
def device_lr(splits):
    Eb, db, _ = splits["background"]
    Ec, dc, sc = splits["calibration"]
    return DeviceLR(random_state=0, max_pairs=3000).fit(Ec, dc, sc, X_background=Eb,
                                                        devices_background=db)


@pytest.mark.parametrize("scoring", ["plda", "cosine"])
@pytest.mark.parametrize("calibration", ["logistic", "isotonic"])
def test_device_lr_on_unseen_devices_is_informative_and_calibrated(scoring, calibration, splits):
    Eb, db, _ = splits["background"]
    Ec, dc, sc = splits["calibration"]
    model = DeviceLR(scoring=scoring, calibration=calibration, random_state=0, max_pairs=3000)
    model.fit(Ec, dc, sc, X_background=Eb, devices_background=db)
    llr, y = model.pair_llrs(*splits["test"], random_state=1)
    assert cllr(llr, y) < 0.3
    assert cllr_cal(llr, y) < 0.1


def test_device_lr_attributes_and_predictions(device_lr, splits):
    m = device_lr
    assert m.n_same_pairs_ == 150 * 12  # the whole universe: 12 references by other speakers each
    assert m.n_diff_pairs_ == 3000
    assert len(m.calibration_scores_) == len(m.calibration_labels_) == m.n_same_pairs_ + m.n_diff_pairs_
    E, dev, _ = splits["test"]
    same = m.predict_llr(E[:5], E[5:15])  # device 0 against device 0
    other = m.predict_llr(E[:5], E[15:30])  # device 0 against device 1
    assert same.shape == other.shape == (5,)
    assert same.mean() > 0 > other.mean()
    np.testing.assert_allclose(m.predict_lr(E[:5], E[5:15]), 10**same)
    np.testing.assert_allclose(m.score(E[:5], E[5:15]), m.scorer_.score(E[:5], E[5:15]))


def test_device_lr_swapped_hypotheses_negate_the_llr(device_lr, splits):
    """Calibrating H2 against H1 on the same pairs (scores negated) gives -log10 LR."""
    from sklearn.base import clone

    m = device_lr
    swapped = clone(m.calibrator_).fit(-m.calibration_scores_, 1 - m.calibration_labels_)
    E = splits["test"][0]
    scores = m.score(E[:5], E[5:15])
    np.testing.assert_allclose(swapped.transform(-scores), -m.calibrator_.transform(scores), atol=1e-4)


def test_device_lr_bounds_llrs_to_elub(device_lr, splits):
    """predict_llr is the calibrator's output clipped to the ELUB bounds of the calibration
    LRs; bounds=None leaves it unbounded."""
    from sklearn.base import clone

    from devicepool.forensic import elub_bounds

    m = device_lr
    low, high = m.llr_bounds_
    expected = elub_bounds(m.calibrator_.transform(m.calibration_scores_), m.calibration_labels_)
    assert (low, high) == expected and low < 0 < high
    E = splits["test"][0]
    raw = m.calibrator_.transform(m.score(E[:5], E[5:15]))
    assert (raw > high).any()  # the test is not vacuous: some raw LRs exceed the bound
    np.testing.assert_allclose(m.predict_llr(E[:5], E[5:15]), np.clip(raw, low, high))
    Eb, db, _ = splits["background"]
    unbounded = clone(m).set_params(bounds=None).fit(*splits["calibration"], X_background=Eb,
                                                     devices_background=db)
    assert unbounded.llr_bounds_ == (-np.inf, np.inf)
    np.testing.assert_allclose(unbounded.predict_llr(E[:5], E[5:15]), raw)


def test_elub_bounds_grow_with_the_evidence_and_refuse_bad_input():
    from devicepool.forensic import elub_bounds

    rng = np.random.default_rng(1)
    def bounds(n):
        y = np.r_[np.ones(n), np.zeros(n)]
        return elub_bounds(np.r_[rng.normal(3, 1, n), rng.normal(-3, 1, n)], y)
    small, large = bounds(20), bounds(2000)
    assert small[1] < large[1] and small[0] > large[0]  # more data support stronger LRs
    assert small[1] <= np.log10(21) + 0.01  # never beyond what one misleading pair allows
    with pytest.raises(ValueError):
        elub_bounds([0.1, np.nan], [1, 0])


def test_device_lr_is_reproducible_and_uses_x_without_background(splits):
    Ec, dc, sc = splits["calibration"]
    a = DeviceLR(scoring="cosine", random_state=3, max_pairs=500).fit(Ec, dc, sc)
    b = DeviceLR(scoring="cosine", random_state=3, max_pairs=500).fit(Ec, dc, sc)
    np.testing.assert_array_equal(a.calibration_scores_, b.calibration_scores_)
    np.testing.assert_array_equal(a.scorer_.devices_, np.unique(dc))
    llr1, y1 = a.pair_llrs(Ec, dc, sc)
    llr2, y2 = a.pair_llrs(Ec, dc, sc)
    np.testing.assert_array_equal(llr1, llr2)
    np.testing.assert_array_equal(y1, y2)


def test_device_lr_errors(splits):
    Ec, dc, sc = splits["calibration"]
    with pytest.raises(InvalidParameterError, match="The 'max_pairs' parameter of DeviceLR"):
        DeviceLR(max_pairs=0).fit(Ec, dc, sc)
    with pytest.raises(InvalidParameterError, match="The 'scoring' parameter of DeviceLR"):
        DeviceLR(scoring="euclid").fit(Ec, dc, sc)
    with pytest.raises(ValueError, match="X_background and devices_background go together"):
        DeviceLR().fit(Ec, dc, sc, X_background=Ec)
    with pytest.raises(ValueError, match="no same-device pairs"):
        DeviceLR().fit(Ec, dc, np.zeros(len(dc)))  # one speaker: no reference by another
    with pytest.raises(ValueError, match="devices must be 1-D with one label per utterance"):
        DeviceLR().fit(Ec, dc[:-1], sc)
    with pytest.raises(NotFittedError):
        DeviceLR().predict_llr(Ec[:1], Ec[1:3])


def test_device_lr_clones_with_a_frozen_embedder(splits):
    from sklearn.base import clone
    from sklearn.decomposition import PCA
    from sklearn.frozen import FrozenEstimator

    Ec, dc, sc = splits["calibration"]
    embedder = FrozenEstimator(PCA(8).fit(splits["background"][0]))
    model = clone(DeviceLR(embedder=embedder, scoring="cosine", max_pairs=300, random_state=0))
    llr = model.fit(Ec, dc, sc).predict_llr(Ec[:2], Ec[2:5])
    assert llr.shape == (2,) and model.n_features_in_ == 8


def test_device_lr_with_a_real_tiny_embedder():
    from test_estimators import make_utterances

    from devicepool.estimators import DACNNClassifier

    X, devices = make_utterances(n=30)
    speakers = (np.arange(30) // 3) % 5
    clf = DACNNClassifier(max_epochs=2, random_state=0).fit(X, devices)
    model = DeviceLR(embedder=clf, lda_dim=2, random_state=0).fit(X, devices, speakers)
    assert model.n_features_in_ == clf.transform(X[:1]).shape[1]
    assert model.predict_llr(X[:4], X[4:7]).shape == (4,)
    llr, y = model.pair_llrs(X, devices, speakers)
    assert llr.shape == y.shape and np.all(np.isfinite(llr))


# --------------------------------------------------------------------------- open set

def open_set_data(seed=0):
    """Three known device clusters around the origin, an unknown one at the origin."""
    rng = np.random.default_rng(seed)
    centres = 4 * np.array([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]])
    y = np.repeat(["a", "b", "c"], 60)
    X = centres[np.repeat(np.arange(3), 60)] + rng.normal(size=(180, 2))
    return X, y, rng.normal(scale=0.5, size=(100, 2))


@pytest.fixture(scope="module")
def known_classifier():
    X, y, _ = open_set_data(0)
    return LogisticRegression().fit(X, y)


@pytest.mark.parametrize("score", ["max_proba", "margin"])
@pytest.mark.parametrize("far", [0.0, 0.05, 0.2])
def test_open_set_threshold_meets_the_false_acceptance_target(known_classifier, score, far):
    X_known, y_known, X_unknown = open_set_data(1)
    model = OpenSetClassifier(known_classifier, far=far, score=score).calibrate(X_known, X_unknown)
    assert model.far_ <= far
    s = model.decision_scores(X_unknown)
    assert np.mean(s > model.threshold_) == model.far_
    assert model.frr_ == np.mean(model.decision_scores(X_known) <= model.threshold_)
    assert (model.n_known_, model.n_unknown_) == (180, 100)


@pytest.mark.parametrize("score", ["max_proba", "margin"])
def test_open_set_predicts_unknown_for_an_out_of_distribution_cluster(known_classifier, score):
    X_known, y_known, X_unknown = open_set_data(1)
    model = OpenSetClassifier(known_classifier, far=0.05, score=score).calibrate(X_known, X_unknown)
    X_test, y_test, X_new_unknown = open_set_data(2)
    pred_unknown = model.predict(X_new_unknown)
    assert np.mean(pred_unknown == UNKNOWN) >= 0.9
    pred = model.predict(X_test)
    accepted = pred != UNKNOWN
    assert accepted.mean() > 0.9
    assert np.all(pred[accepted] == y_test[accepted])


def test_open_set_ties_are_rejected_together():
    class Constant:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, X):
            return np.tile([0.7, 0.3], (len(X), 1))

    model = OpenSetClassifier(Constant(), far=0.5).calibrate(np.zeros((4, 1)), np.zeros((10, 1)))
    assert model.threshold_ == 0.7 and model.far_ == 0.0 and model.frr_ == 1.0
    assert set(model.predict(np.zeros((3, 1)))) == {UNKNOWN}


def test_open_set_errors(known_classifier):
    with pytest.raises(NotFittedError, match="calibrate"):
        OpenSetClassifier(known_classifier).predict(np.zeros((1, 2)))
    with pytest.raises(InvalidParameterError, match=r"The 'far' parameter of OpenSetClassifier must be a float in the range \[0, 1\)"):
        OpenSetClassifier(known_classifier, far=1.0).calibrate(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(InvalidParameterError, match="The 'classifier' parameter"):
        OpenSetClassifier(object()).calibrate(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="at least one recording"):
        OpenSetClassifier(known_classifier).calibrate(np.zeros((1, 2)), np.zeros((0, 2)))


# --------------------------------------------------------------------------- plots

@pytest.mark.parametrize("name", ["plot_tippett", "plot_det", "plot_ece"])
def test_plots_return_axes(name, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from devicepool.forensic import plots

    llr, y = calibrated_llrs(sigma=2.0, n=300)
    ax = getattr(plots, name)(llr, y, title=name)
    assert ax.get_title() == name
    assert len(ax.get_lines()) >= 2
    ax.figure.savefig(tmp_path / "f.png", dpi=60)
    assert (tmp_path / "f.png").stat().st_size > 3000
    from matplotlib.figure import Figure

    ax2 = Figure().add_subplot()
    assert getattr(plots, name)(llr, y, ax=ax2) is ax2


# --------------------------------------------------------------------------- layering

def test_forensic_imports_only_lower_layers():
    allowed = {"numpy", "scipy", "sklearn", "__future__", "typing", "math", "numbers", "warnings",
               "matplotlib", "copy"}  # matplotlib: lazily, inside the plot functions
    lower = {"_validation", "_typing", "_text", "estimators", "models", "audio", "features", "datasets",
             "persistence"}
    for path in (Path(__file__).parents[1] / "devicepool" / "forensic").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                assert set(names) <= lower, (path.name, node.module, names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), path.name
