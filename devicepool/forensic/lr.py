"""``DeviceLR``: "was this recording made with this device?" as a calibrated likelihood ratio.

The pipeline is embedder -> scorer -> calibrator:

1. an *embedder* (a fitted classifier of :mod:`devicepool.estimators`, whose
   ``transform`` gives utterance embeddings; or None when the input already is
   embeddings) maps each recording to a vector;
2. a *scorer* (:class:`~devicepool.forensic.PLDAScorer` or
   :class:`~devicepool.forensic.CosineScorer`), fitted on the *background* devices --
   ideally the devices the embedding network was trained on -- compares a questioned
   vector with the vectors of a reference device;
3. a *calibrator* (:class:`~devicepool.forensic.LogisticCalibrator` or
   :class:`~devicepool.forensic.IsotonicCalibrator`) turns the score into a log10 LR.
   It is fitted on pairs of the *calibration* data ``X`` built as the casework is:
   references recorded by speakers other than the questioned one
   (:mod:`devicepool.forensic._pairs`).

The LR answers H1 "the questioned recording was made with the reference device" against
H2 "it was made with another device of the relevant population". The relevant
population is what the calibration devices represent: an LR is only as valid as that
choice, and the calibration devices should not be the devices under test (evaluate
with :meth:`DeviceLR.pair_llrs` on other devices). Without ``X_background`` the scorer
is fitted on ``X`` too, and the calibration pairs are then scored by a model that has
seen them (optimistic scores; prefer a separate background set).
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .. import persistence
from .._typing import ArrayLike, UtteranceSet
from .._validation import Interval, StrOptions, validate_params
from ._checks import HasMethods, check_embeddings, check_labels
from ._pairs import make_pairs, reference_means
from .calibration import IsotonicCalibrator, LogisticCalibrator
from .metrics import elub_bounds
from .scoring import CosineScorer, PLDAScorer, SNormCosineScorer

__all__ = ["DeviceLR", "cross_validated_llrs"]

_SCORERS = {"plda": PLDAScorer, "cosine": CosineScorer, "snorm": SNormCosineScorer}
_CALIBRATORS = {"logistic": LogisticCalibrator, "isotonic": IsotonicCalibrator}
_CHUNK = 4096  # pairs scored at once (bounds the memory of the reference means)


def _generator(random_state):
    """A numpy Generator from None, an int, a RandomState or a Generator (no global state)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


class DeviceLR(BaseEstimator):
    """Calibrated log10 likelihood ratio that a recording was made with a reference device.

    Parameters
    ----------
    embedder : object with ``transform`` or None, default=None
        A FITTED embedding model (e.g. a :class:`~devicepool.estimators.DACNNClassifier`
        trained on the background devices): ``embedder.transform(X)`` must return
        ``(n_utterances, d)`` embeddings. It is used as given, never refitted. None:
        every ``X`` is already embeddings ``(n_utterances, d)``. :func:`sklearn.base.clone`
        (grid search, cross-validation) would return it unfitted: wrap it in
        :class:`sklearn.frozen.FrozenEstimator` to keep it fitted through clones.
    scoring : {"plda", "cosine", "snorm"} or scorer, default="plda"
        The scorer (a scorer object is cloned).
    calibration : {"logistic", "isotonic"} or calibrator, default="logistic"
        The score-to-log10-LR calibrator (a calibrator object is cloned).
    lda_dim : int or None, default=None
        LDA dimensions of the scorer (ignored for a scorer object).
    n_references : int, default=3
        References per calibration pair (fewer where a device has fewer utterances by
        other speakers).
    max_pairs : int, default=20000
        At most this many calibration pairs of each kind.
    random_state : None, int, RandomState or Generator, default=None
        Drives the choice of pairs.
    bounds : {"elub"} or None, default="elub"
        Bound the log10 LRs to what the calibration data support: the empirical lower
        and upper bounds (:func:`~devicepool.forensic.elub_bounds`) of the calibration
        pairs' LRs. None: unbounded (what 0.4 and earlier gave).

    Attributes
    ----------
    scorer_, calibrator_
        The fitted scorer and calibrator.
    n_features_in_ : int
        Embedding width.
    n_same_pairs_, n_diff_pairs_ : int
        Calibration pairs of each kind.
    calibration_scores_ : ndarray of shape (n_same_pairs_ + n_diff_pairs_,)
        Raw scores of the calibration pairs (same-device first).
    calibration_labels_ : ndarray of shape (n_same_pairs_ + n_diff_pairs_,)
        1 = same device, 0 = different devices.
    llr_bounds_ : (float, float)
        The log10 LR bounds applied (``(-inf, inf)`` for ``bounds=None``).
    """

    _parameter_constraints = {
        "embedder": [None, HasMethods("transform")],
        "scoring": [StrOptions(set(_SCORERS)), HasMethods("fit", "transform", "score_transformed")],
        "calibration": [StrOptions(set(_CALIBRATORS)), HasMethods("fit", "transform")],
        "lda_dim": [Interval(Integral, 1, None, closed="left"), None],
        "n_references": [Interval(Integral, 1, None, closed="left")],
        "max_pairs": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "bounds": [StrOptions({"elub"}), None],
    }

    def __init__(self, embedder=None, scoring="plda", calibration="logistic", lda_dim=None,
                 n_references=3, max_pairs=20000, random_state=None, bounds="elub"):
        self.embedder = embedder
        self.scoring = scoring
        self.calibration = calibration
        self.lda_dim = lda_dim
        self.n_references = n_references
        self.max_pairs = max_pairs
        self.random_state = random_state
        self.bounds = bounds

    # ------------------------------------------------------------------ helpers
    def _embed(self, X, name, n_features=None):
        """Embeddings ``(n, d)`` float64 of ``X`` (through the embedder, if any)."""
        E = X if self.embedder is None else self.embedder.transform(X)
        return check_embeddings(E, name=name if self.embedder is None else f"embeddings of {name}",
                                owner="DeviceLR", n_features=n_features)

    def _make_scorer(self):
        if isinstance(self.scoring, str):
            return _SCORERS[self.scoring](lda_dim=self.lda_dim)
        return clone(self.scoring)

    def _make_calibrator(self):
        if isinstance(self.calibration, str):
            return _CALIBRATORS[self.calibration]()
        return clone(self.calibration)

    def _pair_scores(self, E, devices, speakers, rng):
        """Raw scores and labels of the pairs built from ``E`` -> two arrays (p,)."""
        speakers = (np.arange(len(E)) if speakers is None
                    else check_labels(speakers, len(E), name="speakers", owner="DeviceLR"))
        pairs = make_pairs(devices, speakers, n_references=self.n_references,
                           max_pairs=self.max_pairs, rng=rng)
        n_same = int(pairs.y.sum())
        if n_same == 0:
            raise ValueError(
                "DeviceLR: no same-device pairs: a pair needs two recordings of one device "
                "by different speakers, and no device has them"
            )
        if n_same == len(pairs.y):
            raise ValueError(
                "DeviceLR: no different-device pairs: the data need at least two devices "
                "recorded by different speakers"
            )
        Z = self.scorer_.transform(E)
        scores = np.empty(len(pairs.y))
        for start in range(0, len(scores), _CHUNK):
            stop = min(start + _CHUNK, len(scores))
            means, counts = reference_means(Z, pairs, start, stop)
            scores[start:stop] = self.scorer_.score_transformed(
                Z[pairs.questioned[start:stop]], means, counts)
        return scores, pairs.y

    # ------------------------------------------------------------------ fit
    def fit(self, X: UtteranceSet | ArrayLike, devices: ArrayLike, speakers: ArrayLike | None = None, *,
            X_background: UtteranceSet | ArrayLike | None = None,
            devices_background: ArrayLike | None = None) -> DeviceLR:
        """Fit the scorer (on the background set, else on ``X``) and the calibrator.

        Parameters
        ----------
        X : utterance set or array-like of shape (n, d)
            Calibration recordings: what ``embedder.transform`` takes, or embeddings
            when ``embedder`` is None.
        devices : array-like of shape (n,)
            Device of each recording (at least two devices).
        speakers : array-like of shape (n,), optional
            Speaker of each recording; references are never by the questioned
            recording's speaker. None: every recording has its own speaker.
        X_background : utterance set or array-like, optional
            Recordings of the background devices (those the embedder was trained on)
            for the scorer; with ``devices_background``.
        devices_background : array-like, optional

        Returns
        -------
        self
        """
        validate_params(self.get_params(deep=False), self._parameter_constraints, owner="DeviceLR")
        if (X_background is None) != (devices_background is None):
            raise ValueError("DeviceLR: X_background and devices_background go together; "
                             "got only one of them")
        if X_background is None and self.scoring == "snorm":
            raise ValueError("DeviceLR: scoring='snorm' needs X_background (its cohort): without it the "
                             "cohort would hold the calibration pairs' own devices")
        E = self._embed(X, "X")
        devices = check_labels(devices, len(E), name="devices", owner="DeviceLR")
        self.n_features_in_ = E.shape[1]
        self.scorer_ = self._make_scorer()
        if X_background is None:
            self.scorer_.fit(E, devices)
        else:
            Eb = self._embed(X_background, "X_background", n_features=E.shape[1])
            self.scorer_.fit(Eb, check_labels(devices_background, len(Eb),
                                              name="devices_background", owner="DeviceLR"))
        scores, y = self._pair_scores(E, devices, speakers, _generator(self.random_state))
        self.calibrator_ = self._make_calibrator().fit(scores, y)
        self.calibration_scores_, self.calibration_labels_ = scores, y
        self.llr_bounds_ = (elub_bounds(self.calibrator_.transform(scores), y) if self.bounds == "elub"
                            else (-np.inf, np.inf))
        self.n_same_pairs_ = int(y.sum())
        self.n_diff_pairs_ = int(len(y) - y.sum())
        return self

    # ------------------------------------------------------------------ inference
    def score(self, questioned, references):
        """Raw scores of questioned recordings against ONE device's reference recordings.

        Parameters
        ----------
        questioned : utterance set or array-like of shape (m, d)
        references : utterance set or array-like of shape (n, d)
            Recordings made with the reference device (as ``X`` of :meth:`fit`).

        Returns
        -------
        scores : ndarray of shape (m,)
        """
        check_is_fitted(self, "calibrator_")
        Eq = self._embed(questioned, "questioned", n_features=self.n_features_in_)
        Er = self._embed(references, "references", n_features=self.n_features_in_)
        return self.scorer_.score(Eq, Er)

    def predict_llr(self, questioned: UtteranceSet | ArrayLike,
                    references: UtteranceSet | ArrayLike) -> np.ndarray:
        """log10 LR of H1 (made with the reference device) vs H2, per questioned recording.

        Parameters
        ----------
        questioned : utterance set or array-like of shape (m, d)
        references : utterance set or array-like of shape (n, d)

        Returns
        -------
        llr : ndarray of shape (m,)
        """
        check_is_fitted(self, "calibrator_")
        return self.calibrate_scores(self.score(questioned, references))

    def calibrate_scores(self, scores):
        """Bounded log10 LRs of raw scores (the calibrator, then ``llr_bounds_``), shape (m,)."""
        check_is_fitted(self, "calibrator_")
        return np.clip(self.calibrator_.transform(scores), *self.llr_bounds_)

    def predict_lr(self, questioned, references):
        """Likelihood ratios ``10 ** predict_llr(questioned, references)``, shape (m,)."""
        return 10.0 ** self.predict_llr(questioned, references)

    def pair_llrs(self, X, devices, speakers=None, random_state=None, bounded=True):
        """log10 LRs and hypotheses of evaluation pairs built as the calibration pairs.

        Parameters
        ----------
        X : utterance set or array-like of shape (n, d)
            Evaluation recordings (devices ideally disjoint from the calibration ones).
        devices : array-like of shape (n,)
        speakers : array-like of shape (n,), optional
        random_state : None, int, RandomState or Generator, default=None
            None: the estimator's ``random_state``.
        bounded : bool, default=True
            Clip to ``llr_bounds_`` (what a user gets); False gives the calibrator's raw
            values, for discrimination measures (EER, Cllr_min) that ties at a bound would
            distort.

        Returns
        -------
        llr : ndarray of shape (p,)
        y : ndarray of shape (p,)
            1 = same device, 0 = different devices; for the metrics of
            :mod:`devicepool.forensic.metrics`.
        """
        check_is_fitted(self, "calibrator_")
        E = self._embed(X, "X", n_features=self.n_features_in_)
        devices = check_labels(devices, len(E), name="devices", owner="DeviceLR")
        rs = self.random_state if random_state is None else random_state
        scores, y = self._pair_scores(E, devices, speakers, _generator(rs))
        llr = self.calibrate_scores(scores) if bounded else self.calibrator_.transform(scores)
        return llr, y

    # ------------------------------------------------------------------ pretrained
    @classmethod
    def pretrained(cls, weights=None, embedder="pretrained"):
        """The shipped device embedding with its scorer and calibration: no training needed.

        The calibration was fitted on simulated devices disjoint from the embedding's
        training devices (``docs/pretrained.md``: the recipe, the validation figures and
        the limits). The relevant population (H2) is that simulated population.

        Parameters
        ----------
        weights : str or os.PathLike or None, default=None
            An embedding bundle (``devicepool pretrain``); None: the shipped one.
        embedder : "pretrained", object with ``transform`` or None, default="pretrained"
            ``"pretrained"``: the bundle's :class:`~devicepool.estimators.DeviceEmbedding`
            (recordings in); None: the model takes embeddings.

        Returns
        -------
        model : DeviceLR
            Fitted: ``predict_llr(questioned, references)`` works at once.

        Examples
        --------
        >>> import numpy as np
        >>> lr = DeviceLR.pretrained()
        >>> rng = np.random.default_rng(0)
        >>> llr = lr.predict_llr([rng.standard_normal(16000) * 0.1], [rng.standard_normal(16000) * 0.1])
        >>> llr.shape
        (1,)
        """
        from ..estimators.embedding import DeviceEmbedding, read_bundle

        _, bundle = read_bundle(weights)
        if bundle.get("lr") is None:
            raise ValueError(f"the embedding bundle {weights or 'shipped'!r} has no calibrated back end")
        if isinstance(embedder, str) and embedder == "pretrained":
            embedder = DeviceEmbedding(weights=weights).fit()
        return cls.from_payload(bundle["lr"], embedder=embedder)

    # ------------------------------------------------------------------ persistence
    def to_payload(self):
        """The fitted model, without the embedder, as the dict :func:`devicepool.persistence.dump`
        writes (:func:`devicepool.persistence.to_payload`): plain values and tensors, no
        pickled code; ``torch.save`` it and read it back with ``torch.load(weights_only=True)``
        and :meth:`from_payload`. Its scorer and calibrator must be of the built-in classes
        (:data:`devicepool.persistence.ALLOWED`).

        Returns
        -------
        payload : dict

        Raises
        ------
        ValueError
            A scorer or calibrator of another class.
        """
        check_is_fitted(self, "calibrator_")
        return persistence.to_payload(copy.copy(self).set_params(embedder=None))

    @classmethod
    def from_payload(cls, payload, embedder=None):
        """A fitted ``DeviceLR`` from :meth:`to_payload`'s dict, or from a payload of
        devicepool 0.4-0.5 (format ``"devicepool.forensic.DeviceLR"`` 1-2, arrays as
        tensors or lists).

        Parameters
        ----------
        payload : dict
        embedder : object with ``transform`` or None, default=None
            The embedder the model was fitted with (the payload does not hold it).

        Returns
        -------
        model : DeviceLR
            Gives the same log10 LRs as the model that was written.

        Raises
        ------
        ValueError
            Not a DeviceLR payload, a newer format version, or a damaged one.
        """
        model = persistence.from_payload(payload, source="DeviceLR payload")[0]
        if type(model) is not cls:
            raise ValueError(f"not a DeviceLR payload: it holds a {type(model).__name__}")
        return model.set_params(embedder=embedder)


def cross_validated_llrs(model, X, devices, speakers, *, n_splits=3, X_background=None,
                         devices_background=None):
    """Speaker-disjoint cross-validated log10 LRs of a ``DeviceLR`` recipe on ``X``.

    The honest figure of a calibration: ``model`` (unfitted settings; cloned) is fitted
    on the speakers of ``n_splits - 1`` folds and its LRs are taken on pairs of the held-out
    speakers' recordings (references by other held-out speakers), for every fold; the
    LRs of all folds are pooled. The resubstitution Cllr (calibration pairs scored by
    the calibration fitted on them) is optimistic; this one is not.

    Parameters
    ----------
    model : DeviceLR
    X : utterance set or array-like of shape (n, d)
    devices, speakers : array-like of shape (n,)
    n_splits : int, default=3
        Speaker folds (at most the number of speakers // 2: a fold needs 2 speakers).
    X_background, devices_background : optional
        As :meth:`DeviceLR.fit`.

    Returns
    -------
    llr, y : ndarray of shape (p,)
        Pooled held-out log10 LRs and hypotheses (1 = same device).

    Raises
    ------
    ValueError
        Fewer than 4 speakers (no fold could hold 2 speakers out and still calibrate).
    """
    from sklearn.model_selection import GroupKFold

    devices = np.asarray(devices)
    speakers = np.asarray(speakers)
    n_spk = len(np.unique(speakers))
    if n_spk < 4:
        raise ValueError(f"cross-validated LRs need at least 4 speakers (2 held out per fold, "
                         f"2 to calibrate on); the data have {n_spk}")
    k = max(2, min(int(n_splits), n_spk // 2))
    embed = model._embed if model.embedder is not None else (lambda A, name: np.asarray(A, dtype=float))
    E = embed(X, "X")
    Eb = None if X_background is None else embed(X_background, "X_background")
    llrs, ys = [], []
    for tr, te in GroupKFold(k).split(E, groups=speakers):
        m = clone(model).set_params(embedder=None).fit(
            E[tr], devices[tr], speakers[tr], X_background=Eb, devices_background=devices_background)
        try:
            llr, y = m.pair_llrs(E[te], devices[te], speakers[te])
        except ValueError:  # a held-out fold without pairs of one kind
            continue
        llrs.append(llr)
        ys.append(y)
    if not llrs:
        raise ValueError("no held-out fold had both same- and different-device pairs")
    return np.concatenate(llrs), np.concatenate(ys)
