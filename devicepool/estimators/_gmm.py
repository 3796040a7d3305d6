"""Gaussian-mixture arithmetic of the classical systems: UBM training frames, Baum-Welch
statistics, MAP adaptation of the means, supervectors and GMM-UBM scores.

Only these are written here; the UBM itself is scikit-learn's
:class:`~sklearn.mixture.GaussianMixture` (``covariance_type="diag"``). Everything is
vectorised over frames: the frames of many utterances are processed together in chunks
of at most :data:`CHUNK_VALUES` log-densities (frames x components x mixtures scored at
once; an utterance longer than that is a chunk of its own), so memory does not grow with
the corpus.

MAP adaptation of the means (Reynolds, Quatieri & Dunn 2000), relevance factor ``r``::

    n_k = sum_t gamma_tk,   f_k = sum_t gamma_tk x_t,   alpha_k = n_k / (n_k + r)
    m_k = alpha_k f_k / n_k + (1 - alpha_k) mu_k = (f_k + r mu_k) / (n_k + r)

so a component the utterance does not touch (``n_k = 0``) keeps the UBM's mean, and
``r -> inf`` returns the UBM.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["CHUNK_VALUES", "sample_frames", "fit_ubm", "log_gaussians", "utterance_stats",
           "map_means", "supervectors", "llr_scores"]

#: log-densities (frames x components x mixtures) per chunk: 16 MiB of float64
CHUNK_VALUES = 1 << 21


def sample_frames(X, max_frames, rng):
    """At most ``max_frames`` frames drawn uniformly without replacement from an utterance
    set, without concatenating the whole set first.

    Parameters
    ----------
    X : list of ndarray of shape (n_frames_i, n_features)
    max_frames : int or None
        None: every frame.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (min(max_frames, total), n_features), float64
    """
    lengths = np.asarray([len(u) for u in X], dtype=np.int64)
    total = int(lengths.sum())
    if max_frames is None or total <= max_frames:
        return np.concatenate(X).astype(np.float64)
    chosen = np.sort(rng.choice(total, size=int(max_frames), replace=False))
    ends = np.cumsum(lengths)
    owner = np.searchsorted(ends, chosen, side="right")
    offset = chosen - (ends - lengths)[owner]
    out = np.empty((len(chosen), X[0].shape[1]), dtype=np.float64)
    for u in np.unique(owner):
        sel = owner == u
        out[sel] = X[u][offset[sel]]
    return out


def fit_ubm(frames, n_components, *, max_iter=100, reg_covar=1e-3, n_init=1, random_state=None):
    """A diagonal-covariance :class:`~sklearn.mixture.GaussianMixture` fitted on ``frames``."""
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components, covariance_type="diag", max_iter=max_iter,
                           reg_covar=reg_covar, n_init=n_init,
                           random_state=random_state).fit(frames)


def _chunks(lengths, per_frame):
    """``(start, stop)`` utterance ranges whose frames x ``per_frame`` values fit one chunk
    of :data:`CHUNK_VALUES` (a longer utterance is a range of its own)."""
    budget = max(1, CHUNK_VALUES // max(1, per_frame))
    start, frames = 0, 0
    for i, n in enumerate(lengths):
        if frames and frames + n > budget:
            yield start, i
            start, frames = i, 0
        frames += n
    if start < len(lengths):
        yield start, len(lengths)


def log_gaussians(frames, means, variances, log_weights):
    """``log w_k + log N(x_t; m_k, diag(v_k))`` for every frame and component.

    Parameters
    ----------
    frames : ndarray of shape (n_frames, n_features)
    means : ndarray of shape (n_sets, n_components, n_features)
        ``n_sets`` mixtures sharing the variances and weights (the UBM and its MAP-adapted
        copies).
    variances : ndarray of shape (n_components, n_features)
    log_weights : ndarray of shape (n_components,)

    Returns
    -------
    ndarray of shape (n_frames, n_sets, n_components), float64
    """
    x = np.asarray(frames, dtype=np.float64)
    prec = 1.0 / variances                                         # (K, D)
    n_sets, k, _ = means.shape
    const = log_weights - 0.5 * np.sum(np.log(2.0 * np.pi * variances), axis=1)   # (K,)
    quad = (x * x) @ prec.T                                       # (T, K)
    cross = x @ (means * prec).reshape(n_sets * k, -1).T           # (T, S*K)
    mean_term = np.einsum("skd,skd->sk", means, means * prec)      # (S, K)
    out = cross.reshape(len(x), n_sets, k)
    out -= 0.5 * quad[:, None, :]
    out -= 0.5 * mean_term[None]
    out += const
    return out


def _ubm_arrays(ubm):
    return (np.asarray(ubm.means_, np.float64), np.asarray(ubm.covariances_, np.float64),
            np.log(np.asarray(ubm.weights_, np.float64)))


def utterance_stats(ubm, X):
    """Zeroth- and first-order Baum-Welch statistics of each utterance under the UBM.

    Parameters
    ----------
    ubm : fitted GaussianMixture (diagonal covariances)
    X : list of ndarray of shape (n_frames_i, n_features)

    Returns
    -------
    n : ndarray of shape (n_utterances, n_components)
        ``sum_t gamma_tk``.
    f : ndarray of shape (n_utterances, n_components, n_features)
        ``sum_t gamma_tk x_t``.
    """
    means, variances, log_w = _ubm_arrays(ubm)
    k, d = means.shape
    lengths = [len(u) for u in X]
    n = np.zeros((len(X), k))
    f = np.zeros((len(X), k, d))
    for a, b in _chunks(lengths, per_frame=k):
        frames = np.concatenate(X[a:b]).astype(np.float64)
        logp = log_gaussians(frames, means[None], variances, log_w)[:, 0]   # (T, K)
        gamma = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
        start = 0
        for i in range(a, b):
            stop = start + lengths[i]
            g = gamma[start:stop]
            n[i] = g.sum(axis=0)
            f[i] = g.T @ frames[start:stop]
            start = stop
    return n, f


def map_means(ubm_means, n, f, relevance):
    """MAP-adapted means ``(f + r mu) / (n + r)`` (see the module docstring).

    Parameters
    ----------
    ubm_means : ndarray of shape (n_components, n_features)
    n : ndarray of shape (..., n_components)
    f : ndarray of shape (..., n_components, n_features)
    relevance : float
        ``r > 0``; ``np.inf`` returns the UBM's means.

    Returns
    -------
    ndarray of shape (..., n_components, n_features)
    """
    n = np.asarray(n, dtype=np.float64)[..., None]
    if np.isinf(relevance):
        return np.broadcast_to(ubm_means, np.shape(f)).copy()
    return (np.asarray(f, np.float64) + relevance * ubm_means) / (n + relevance)


def supervectors(ubm, n, f, relevance, normalize=True):
    """Mean supervectors of MAP-adapted models, one row per utterance.

    With ``normalize`` the offsets from the UBM are scaled as in the KL-divergence kernel
    (Campbell et al. 2006): ``sqrt(w_k) (m_k - mu_k) / sigma_k``, so a linear kernel on
    them approximates the divergence between the adapted models. Without it the adapted
    means themselves are stacked.

    Returns
    -------
    ndarray of shape (n_utterances, n_components * n_features)
    """
    means, variances, _ = _ubm_arrays(ubm)
    adapted = map_means(means, n, f, relevance)
    if not normalize:
        return adapted.reshape(len(adapted), -1)
    scale = np.sqrt(ubm.weights_)[:, None] / np.sqrt(variances)
    return ((adapted - means) * scale).reshape(len(adapted), -1)


def llr_scores(ubm, class_means, X):
    """Per utterance and class, the mean over frames of ``log p(x | class) - log p(x | UBM)``.

    Parameters
    ----------
    ubm : fitted GaussianMixture
    class_means : ndarray of shape (n_classes, n_components, n_features)
        MAP-adapted means (weights and variances are the UBM's).
    X : list of ndarray of shape (n_frames_i, n_features)

    Returns
    -------
    ndarray of shape (n_utterances, n_classes)
    """
    means, variances, log_w = _ubm_arrays(ubm)
    stacked = np.concatenate([means[None], np.asarray(class_means, np.float64)])
    s, k = stacked.shape[:2]
    lengths = np.asarray([len(u) for u in X])
    out = np.empty((len(X), s - 1))
    for a, b in _chunks(lengths, per_frame=s * k):
        frames = np.concatenate(X[a:b]).astype(np.float64)
        frame_ll = logsumexp(log_gaussians(frames, stacked, variances, log_w), axis=2)  # (T, S)
        llr = frame_ll[:, 1:] - frame_ll[:, :1]
        ends = np.cumsum(lengths[a:b])
        sums = np.add.reduceat(llr, ends - lengths[a:b], axis=0)
        out[a:b] = sums / lengths[a:b, None]
    return out
