"""Scorers of a questioned embedding against the reference embeddings of one device.

Both scorers are fitted on embeddings of *training* devices (labels = device) and then
compare utterances of devices they need not have seen. Each first maps an embedding
through the same steps (:meth:`transform`): centring on the training mean, an optional
LDA projection to ``lda_dim`` dimensions (:class:`sklearn.discriminant_analysis.
LinearDiscriminantAnalysis`, SVD solver, fitted on the device labels; its scaling
whitens the within-device scatter) and length normalisation to the unit sphere.

* :class:`CosineScorer`: the cosine between the questioned vector and the (normalised)
  mean of the reference vectors.
* :class:`PLDAScorer`: a two-covariance model (the simplified PLDA of Brümmer & de
  Villiers): a device has a latent mean ``m ~ N(mu, B)``, each of its recordings is
  ``x = m + e`` with ``e ~ N(0, W)``. The score is the natural-log likelihood ratio of
  "the questioned vector and the ``n`` references share one latent mean" against "they
  come from two devices", in closed form (below). It is a score, not yet a calibrated
  LR: the model is only as right as its Gaussian assumptions.

* :class:`SNormCosineScorer`: the cosine, normalised by adaptive symmetric score
  normalisation (AS-norm, as in speaker verification): the questioned vector and the
  reference mean are each scored against a cohort (the training devices' mean vectors),
  and the cosine is standardised by the mean and standard deviation of each side's
  ``top_k`` highest cohort scores, then averaged. Recordings whose every similarity is
  shifted (another speech source, another duration) get comparable scores, so one
  calibration holds across conditions.

All return raw scores (higher = more like the same device); a calibrator
(:mod:`devicepool.forensic.calibration`) turns them into log10 LRs.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from scipy.linalg import cholesky, eigh, solve_triangular
from sklearn.base import BaseEstimator
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, validate_params
from ._checks import check_embeddings, check_labels

__all__ = ["CosineScorer", "PLDAScorer", "SNormCosineScorer"]

#: Relative ridge added to W and B of the PLDA model: ``RIDGE * trace(W) / d`` times the
#: identity, so that both are positive definite when there are fewer embeddings than
#: dimensions or fewer devices than dimensions.
RIDGE = 1e-3


class _Scorer(BaseEstimator):
    """Shared preprocessing (centring, LDA, length norm) and the scoring entry points."""

    _parameter_constraints = {"lda_dim": [Interval(Integral, 1, None, closed="left"), None]}

    def __init__(self, lda_dim=None):
        self.lda_dim = lda_dim

    def fit(self, E, devices):
        """Fit the preprocessing and the model on embeddings of training devices.

        Parameters
        ----------
        E : array-like of shape (n_utterances, n_features)
            Embeddings of the training devices.
        devices : array-like of shape (n_utterances,)
            The device of each embedding (at least 2 distinct).

        Returns
        -------
        self
        """
        owner = type(self).__name__
        validate_params(self.get_params(), self._parameter_constraints, owner=owner)
        E = check_embeddings(E, owner=owner)
        devices = check_labels(devices, len(E), name="devices", owner=owner)
        self.devices_, codes = np.unique(devices, return_inverse=True)
        if len(self.devices_) < 2:
            raise ValueError(f"{owner} needs embeddings of at least 2 devices; got 1")
        self.n_features_in_ = E.shape[1]
        self.mean_ = E.mean(axis=0)
        self.lda_ = self._fit_lda(E - self.mean_, codes)
        self._fit_model(self.transform(E), codes)
        return self

    def _fit_lda(self, X, codes):
        if self.lda_dim is None:
            return None
        limit = min(len(self.devices_) - 1, X.shape[1])
        if self.lda_dim > limit:
            raise ValueError(
                f"{type(self).__name__}: lda_dim={self.lda_dim} exceeds min(n_devices - 1, "
                f"n_features) = {limit}, the most discriminant directions LDA can find"
            )
        with warnings.catch_warnings():  # embeddings are often wider than the data
            warnings.filterwarnings("ignore", message="Variables are collinear")
            return LinearDiscriminantAnalysis(n_components=self.lda_dim).fit(X, codes)

    def _fit_model(self, Z, codes):
        """Fit the scoring model on preprocessed training vectors (nothing by default)."""

    def transform(self, E):
        """Preprocess embeddings: centre, project (LDA, if any), length-normalise.

        Parameters
        ----------
        E : array-like of shape (n, n_features)

        Returns
        -------
        Z : ndarray of shape (n, dim)
            Unit-norm rows; ``dim`` is ``lda_dim`` (or ``n_features`` without LDA).
        """
        check_is_fitted(self, "mean_")
        E = check_embeddings(E, owner=type(self).__name__, n_features=self.n_features_in_)
        X = E - self.mean_
        if self.lda_ is not None:
            X = self.lda_.transform(X)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.maximum(norms, np.finfo(float).tiny)

    def score(self, questioned, references):
        """Score each questioned embedding against one device's references.

        Parameters
        ----------
        questioned : array-like of shape (m, n_features)
        references : array-like of shape (n, n_features)
            Embeddings of recordings made with the reference device.

        Returns
        -------
        scores : ndarray of shape (m,)
        """
        Zq = self.transform(questioned)
        Zr = self.transform(references)
        mean = np.broadcast_to(Zr.mean(axis=0), Zq.shape)
        return self.score_transformed(Zq, mean, len(Zr))

    def score_pairs(self, questioned, reference_sets):
        """Score questioned embedding ``i`` against reference set ``i``, for every ``i``.

        Parameters
        ----------
        questioned : array-like of shape (m, n_features)
        reference_sets : sequence of m array-likes of shape (n_i, n_features)

        Returns
        -------
        scores : ndarray of shape (m,)
        """
        Zq = self.transform(questioned)
        if len(reference_sets) != len(Zq):
            raise ValueError(
                f"{type(self).__name__}: score_pairs needs one reference set per questioned "
                f"embedding; got {len(reference_sets)} sets for {len(Zq)} embeddings"
            )
        counts = np.array([len(r) for r in reference_sets])
        if (counts == 0).any():
            raise ValueError(f"{type(self).__name__}: reference set "
                             f"{int(np.flatnonzero(counts == 0)[0])} is empty")
        Zr = self.transform(np.concatenate([np.asarray(r, float) for r in reference_sets]))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(Zr, starts, axis=0) / counts[:, None]
        return self.score_transformed(Zq, means, counts)

    def score_transformed(self, Zq, Zr_mean, n_references):
        """Scores from preprocessed vectors (:meth:`transform`), for bulk scoring.

        Parameters
        ----------
        Zq : ndarray of shape (m, dim)
            Preprocessed questioned vectors.
        Zr_mean : ndarray of shape (m, dim)
            Per pair, the mean of the preprocessed reference vectors.
        n_references : int or ndarray of shape (m,)
            Per pair, the number of references averaged in ``Zr_mean``.

        Returns
        -------
        scores : ndarray of shape (m,)
        """
        raise NotImplementedError(f"{type(self).__name__} must define score_transformed "
                                  "(abstract hook of the scorers; CosineScorer and PLDAScorer do)")


class CosineScorer(_Scorer):
    """Cosine similarity to the mean reference vector, after centring, LDA and length norm.

    Parameters
    ----------
    lda_dim : int or None, default=None
        Dimensions of the LDA projection fitted on the training devices (at most
        ``n_devices - 1``); None for no projection.

    Attributes
    ----------
    devices_ : ndarray of shape (n_devices,)
        The training devices.
    mean_ : ndarray of shape (n_features,)
        Training mean subtracted first.
    lda_ : LinearDiscriminantAnalysis or None

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(4, 8)) * 3
    >>> devices = np.repeat(np.arange(4), 10)
    >>> E = centres[devices] + rng.normal(size=(40, 8))
    >>> s = CosineScorer().fit(E, devices)
    >>> same, other = s.score(E[:1], E[1:10])[0], s.score(E[:1], E[10:20])[0]
    >>> bool(same > other)
    True
    """

    def score_transformed(self, Zq, Zr_mean, n_references):
        norms = np.linalg.norm(Zr_mean, axis=1, keepdims=True)
        r = Zr_mean / np.maximum(norms, np.finfo(float).tiny)
        return np.einsum("ij,ij->i", Zq, r)


class SNormCosineScorer(_Scorer):
    """Cosine similarity with adaptive symmetric score normalisation against a cohort.

    Parameters
    ----------
    lda_dim : int or None, default=None
    top_k : int, default=100
        Cohort scores (the highest) that give each side's mean and standard deviation.

    Attributes
    ----------
    cohort_ : ndarray of shape (n_devices, dim)
        Unit-norm mean vector of each training device (preprocessed).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(30, 8)) * 3
    >>> devices = np.repeat(np.arange(30), 10)
    >>> E = centres[devices] + rng.normal(size=(300, 8))
    >>> s = SNormCosineScorer(top_k=10).fit(E, devices)
    >>> same, other = s.score(E[:1], E[1:10])[0], s.score(E[:1], E[10:20])[0]
    >>> bool(same > other)
    True
    """

    _parameter_constraints = {**_Scorer._parameter_constraints,
                              "top_k": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, lda_dim=None, top_k=100):
        super().__init__(lda_dim=lda_dim)
        self.top_k = top_k

    def _fit_model(self, Z, codes):
        sums = np.zeros((len(self.devices_), Z.shape[1]))
        np.add.at(sums, codes, Z)
        self.cohort_ = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), np.finfo(float).tiny)

    def _side(self, V):
        k = min(int(self.top_k), len(self.cohort_))
        c = V @ self.cohort_.T
        top = np.partition(c, c.shape[1] - k, axis=1)[:, -k:]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-6)

    def score_transformed(self, Zq, Zr_mean, n_references):
        norms = np.linalg.norm(Zr_mean, axis=1, keepdims=True)
        r = Zr_mean / np.maximum(norms, np.finfo(float).tiny)
        s = np.einsum("ij,ij->i", Zq, r)
        mq, sq = self._side(Zq)
        mr, sr = self._side(r)
        return 0.5 * ((s - mq) / sq + (s - mr) / sr)


class PLDAScorer(_Scorer):
    """Two-covariance (simplified PLDA) log likelihood ratio of a questioned vector and
    ``n`` references.

    After the preprocessing, with ``m_k`` the mean of training device ``k`` (``n_k``
    vectors, ``K`` devices, ``N`` vectors, overall mean ``mu``):

    * ``W = sum_k sum_i (x_ki - m_k)(x_ki - m_k)^T / (N - K)``;
    * ``B = sum_k (m_k - mu)(m_k - mu)^T / (K - 1) - mean_k(1 / n_k) W``, its negative
      eigenvalues set to 0 (the scatter of device means minus their sampling noise);
    * both get the ridge ``RIDGE * trace(W) / d`` on the diagonal.

    ``W = L L^T`` (Cholesky) and the eigendecomposition of ``L^-1 B L^-T`` give a basis
    where ``W = I`` and ``B = diag(b)``, so the dimensions are independent. With ``x``
    the questioned vector and ``r`` the mean of the ``n`` references (sufficient for the
    shared mean), per dimension, ``w = 1 / n``::

        same device:       cov(x, r) = [[b + 1, b], [b, b + w]]
        different devices: cov(x, r) = [[b + 1, 0], [0, b + w]]

    and the score is the sum over dimensions of the log ratio of the two zero-mean
    bivariate Gaussian densities (natural log).

    Parameters
    ----------
    lda_dim : int or None, default=None
        As :class:`CosineScorer`. Without LDA, ``W`` and ``B`` are ``n_features``
        square: for wide embeddings (hundreds of dimensions) and few devices, an LDA
        projection is usually the better model.

    Attributes
    ----------
    devices_, mean_, lda_
        As :class:`CosineScorer`.
    model_mean_ : ndarray of shape (dim,)
        ``mu``, the mean of the preprocessed training vectors.
    projection_ : ndarray of shape (dim, dim)
        ``y = (z - mu) @ projection_`` has ``W = I`` and ``B = diag(between_)``.
    between_ : ndarray of shape (dim,)
        The eigenvalues ``b``: between-device variance in units of within-device variance.
    """

    def _fit_model(self, Z, codes):
        n, d = Z.shape
        counts = np.bincount(codes)
        k = len(counts)
        if n - k < 1:
            raise ValueError(
                "PLDAScorer needs at least one training device with two or more "
                "embeddings, to estimate the within-device covariance"
            )
        means = np.zeros((k, d))
        np.add.at(means, codes, Z)
        means /= counts[:, None]
        dev = Z - means[codes]
        W = dev.T @ dev / (n - k)
        mu = Z.mean(axis=0)
        C = means - mu
        B = C.T @ C / (k - 1) - np.mean(1.0 / counts) * W
        lam, U = eigh(B)
        B = (U * np.clip(lam, 0.0, None)) @ U.T
        scale = RIDGE * (np.trace(W) or np.trace(B) or 1.0) / d
        W[np.diag_indices(d)] += scale
        B[np.diag_indices(d)] += scale
        L = cholesky(W, lower=True)
        L_inv = solve_triangular(L, np.eye(d), lower=True)
        Bt = L_inv @ B @ L_inv.T
        b, V = eigh(0.5 * (Bt + Bt.T))
        self.model_mean_ = mu
        self.projection_ = (V.T @ L_inv).T
        self.between_ = np.clip(b, 0.0, None)

    def score_transformed(self, Zq, Zr_mean, n_references):
        check_is_fitted(self, "projection_")
        x = (np.asarray(Zq, float) - self.model_mean_) @ self.projection_
        r = (np.asarray(Zr_mean, float) - self.model_mean_) @ self.projection_
        w = 1.0 / np.broadcast_to(np.asarray(n_references, float), (len(x),))[:, None]
        b = self.between_[None, :]
        det_same = b * (1.0 + w) + w  # (b + 1)(b + w) - b^2
        det_diff = (b + 1.0) * (b + w)
        q_same = ((b + w) * x**2 - 2.0 * b * x * r + (b + 1.0) * r**2) / det_same
        q_diff = x**2 / (b + 1.0) + r**2 / (b + w)
        return 0.5 * (np.log(det_diff) - np.log(det_same) + q_diff - q_same).sum(axis=1)
