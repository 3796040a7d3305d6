"""Classical reference systems for the accuracy benchmark (utterance sets of log filterbanks).

Each factory returns an unfitted scikit-learn classifier that reads an utterance set of
``FilterBank`` features ``(n_frames, 24)``, so :func:`devicepool.protocol.register_model`
runs it on exactly the protocol's folds, beside the networks:

* ``logreg_meanstd``: per-band mean and standard deviation over time (48 values), scaled,
  multinomial logistic regression -- the simplest channel model;
* ``svm_percentiles`` (after Hanilci et al.): per-band mean, standard deviation, 10th and
  90th percentiles (96 values), scaled, RBF-SVM;
* ``gsv_svm`` (after Kotropoulos & Samaras): 20 MFCC (DCT-II of the 24 log filterbank
  energies) + deltas (+-2 frames) -> a 64-component diagonal GMM universal background
  model on the training frames (at most ``ubm_frames`` of them, drawn uniformly) -> per
  utterance the MAP-adapted means (relevance factor 16), normalised by the UBM's standard
  deviations and the square roots of its weights (the KL-divergence kernel), stacked into
  a 2,560-value supervector -> linear SVM.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC, LinearSVC


def _mean_std(X):
    return np.stack([np.concatenate([u.mean(0), u.std(0)]) for u in X])


def _percentile_stats(X):
    return np.stack([np.concatenate([u.mean(0), u.std(0), np.percentile(u, 10, axis=0),
                                     np.percentile(u, 90, axis=0)]) for u in X])


def make_logreg_meanstd(random_state=None, **params):
    return make_pipeline(FunctionTransformer(_mean_std), StandardScaler(),
                         LogisticRegression(max_iter=5000, C=params.get("C", 1.0)))


def make_svm_percentiles(random_state=None, **params):
    return make_pipeline(FunctionTransformer(_percentile_stats), StandardScaler(),
                         SVC(kernel="rbf", C=params.get("C", 10.0), gamma="scale"))


def mfcc_with_deltas(logmel, n_mfcc=20, width=2):
    """``(n_frames, 2 * n_mfcc)``: DCT-II (orthonormal) cepstra c0..c{n-1} and their deltas."""
    c = dct(np.asarray(logmel, np.float64), type=2, axis=1, norm="ortho")[:, :n_mfcc]
    pad = np.pad(c, ((width, width), (0, 0)), mode="edge")
    n = len(c)
    num = sum(k * (pad[width + k:width + k + n] - pad[width - k:width - k + n])
              for k in range(1, width + 1))
    delta = num / (2 * sum(k * k for k in range(1, width + 1)))
    return np.hstack([c, delta])


class GaussianSupervectors(TransformerMixin, BaseEstimator):
    """UBM fitted in ``fit``; ``transform`` gives normalised MAP-adapted mean supervectors."""

    def __init__(self, n_components=64, relevance=16.0, ubm_frames=60000, random_state=None):
        self.n_components = n_components
        self.relevance = relevance
        self.ubm_frames = ubm_frames
        self.random_state = random_state

    def fit(self, X, y=None):
        feats = [mfcc_with_deltas(u) for u in X]
        frames = np.concatenate(feats)
        rng = np.random.default_rng(self.random_state)
        if len(frames) > self.ubm_frames:
            frames = frames[rng.choice(len(frames), self.ubm_frames, replace=False)]
        self.ubm_ = GaussianMixture(self.n_components, covariance_type="diag", max_iter=100,
                                    reg_covar=1e-3, random_state=self.random_state).fit(frames)
        return self

    def transform(self, X):
        ubm = self.ubm_
        mu, sd, w = ubm.means_, np.sqrt(ubm.covariances_), ubm.weights_
        out = np.empty((len(X), mu.size))
        for i, u in enumerate(X):
            f = mfcc_with_deltas(u)
            gamma = ubm.predict_proba(f)                         # (T, K)
            n = gamma.sum(0)                                     # (K,)
            first = gamma.T @ f                                  # (K, D)
            alpha = (n / (n + self.relevance))[:, None]
            adapted = alpha * first / np.maximum(n, 1e-10)[:, None] + (1 - alpha) * mu
            out[i] = (np.sqrt(w)[:, None] * (adapted - mu) / sd).ravel()
        return out


def make_gsv_svm(random_state=None, **params):
    return make_pipeline(GaussianSupervectors(random_state=0 if random_state is None else random_state),
                         LinearSVC(C=params.get("C", 1.0), max_iter=20000))


REFERENCES = {
    "logreg_meanstd": ("mean/std log-filterbank + logistic regression", make_logreg_meanstd),
    "svm_percentiles": ("per-band mean/std/p10/p90 + RBF-SVM (Hanilci)", make_svm_percentiles),
    "gsv_svm": ("Gaussian supervector + linear SVM (Kotropoulos & Samaras)", make_gsv_svm),
}


def register_references():
    """Register the three references with the protocol (feature: FilterBank)."""
    from devicepool.protocol import register_model

    for name, (label, factory) in REFERENCES.items():
        register_model(name, factory, feature="fbank", label=label)
    return list(REFERENCES)
