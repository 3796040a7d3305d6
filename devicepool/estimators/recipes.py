"""Ready-made classical systems over log filterbanks (the registry's ``gsv_svm`` and
``gmm_ubm``), as :class:`~sklearn.pipeline.Pipeline` objects.

Both read the output of :class:`~devicepool.features.FilterBank` (24 log mel bands) and
start with :class:`~devicepool.features.MFCC` (20 cepstra ``c0..c19`` + deltas over
+-2 frames, 40 values per frame). The defaults are those of the measured reference
(``docs/classical.md``): a 64-component diagonal UBM trained on at most 100,000 frames,
relevance factor 16.
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from ..features import MFCC
from .classical import GaussianSupervector, GMMUBMClassifier

__all__ = ["make_gsv_svm", "make_gmm_ubm", "make_pretrained_lr"]


def make_gsv_svm(random_state=None, *, n_mfcc=20, n_deltas=1, n_components=64, relevance=16.0,
                 ubm_frames=100_000, C=1.0, max_iter=20_000):
    """``MFCC -> GaussianSupervector -> LinearSVC``: the Gaussian-supervector SVM.

    After Kotropoulos & Samaras (2014): one MAP-adapted GMM per recording, its
    normalised mean supervector (KL-divergence kernel), a linear SVM over devices
    (one-vs-rest, liblinear). Its scores are the SVM's ``decision_function``.

    Parameters
    ----------
    random_state : int or None
        The UBM's frame draw and initialisation, and the SVM's.
    n_mfcc, n_deltas : int
        :class:`~devicepool.features.MFCC` parameters.
    n_components, relevance, ubm_frames : int, float, int
        :class:`~devicepool.estimators.GaussianSupervector` parameters.
    C, max_iter : float, int
        :class:`~sklearn.svm.LinearSVC` parameters.

    Returns
    -------
    Pipeline
        Steps ``mfcc``, ``gsv``, ``svm``; input: an utterance set of log filterbanks.

    Examples
    --------
    >>> [name for name, _ in make_gsv_svm(0).steps]
    ['mfcc', 'gsv', 'svm']
    """
    return Pipeline([
        ("mfcc", MFCC(n_mfcc=n_mfcc, n_deltas=n_deltas)),
        ("gsv", GaussianSupervector(n_components=n_components, relevance=relevance,
                                    ubm_frames=ubm_frames, random_state=random_state)),
        ("svm", LinearSVC(C=C, max_iter=max_iter, random_state=random_state)),
    ])


def make_gmm_ubm(random_state=None, *, n_mfcc=20, n_deltas=1, n_components=64, relevance=16.0,
                 ubm_frames=100_000, calibration_folds=3):
    """``MFCC -> GMMUBMClassifier``: MAP-adapted device GMMs scored against the UBM.

    After Hanilçi et al. (2012). ``fit(X, y, gmm__groups=speakers)`` makes the
    calibration folds speaker-disjoint (the protocol passes the speakers).

    Returns
    -------
    Pipeline
        Steps ``mfcc``, ``gmm``; input: an utterance set of log filterbanks.

    Examples
    --------
    >>> [name for name, _ in make_gmm_ubm(0).steps]
    ['mfcc', 'gmm']
    """
    return Pipeline([
        ("mfcc", MFCC(n_mfcc=n_mfcc, n_deltas=n_deltas)),
        ("gmm", GMMUBMClassifier(n_components=n_components, relevance=relevance,
                                 ubm_frames=ubm_frames, calibration_folds=calibration_folds,
                                 random_state=random_state)),
    ])


def make_pretrained_lr(random_state=None, *, sample_rate=None, C=10.0, weights=None):
    """The few-shot device classifier: the pretrained embedding + logistic regression.

    Waveforms (or paths) in. The embedding is not trained (it was pretrained on simulated
    devices, ``docs/pretrained.md``); only the linear back end learns the devices, so a few
    recordings per device suffice. Fit it with a handful of recordings of each device.

    Parameters
    ----------
    random_state : None or int
        The logistic regression's (its lbfgs solver is deterministic; kept for the
        registry's factory signature).
    sample_rate : int, optional
        Rate of the waveforms (files are resampled by themselves).
    C : float, default=10.0
        Inverse regularisation of the logistic regression.
    weights : str or os.PathLike, optional
        Another embedding bundle than the shipped one.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        ``embed`` (:class:`~devicepool.estimators.embedding.DeviceEmbedding`) -> ``clf``
        (:class:`~sklearn.linear_model.LogisticRegression`).
    """
    from sklearn.linear_model import LogisticRegression

    from .embedding import DeviceEmbedding

    return Pipeline([
        ("embed", DeviceEmbedding(weights=weights, sample_rate=sample_rate)),
        ("clf", LogisticRegression(C=C, max_iter=2000, random_state=random_state)),
    ])
