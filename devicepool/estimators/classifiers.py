"""The three classifiers: SA-CNN, DA-CNN and the DFT-CNN baseline."""

from __future__ import annotations

import numpy as np

from ..models import DACNN, DFTCNN, SACNN
from ._base import _UtteranceClassifier

__all__ = ["SACNNClassifier", "DACNNClassifier", "DFTCNNClassifier"]

_COMMON_PARAMS = """
    Parameters
    ----------
    module : torch.nn.Module class or None, default=None
        None means :class:`~devicepool.models.{module}`. Any network keeping the module
        contract (:mod:`devicepool.models._contract`) works: ``n_classes`` and
        ``n_features`` (``{width}``, the input width) are set from the data and
        ``module__<name>`` sets its other constructor arguments.
    criterion : default=torch.nn.CrossEntropyLoss
    optimizer : default=torch.optim.Adam
    lr : float, default=3e-3
        Peak learning rate of the one-cycle schedule (the constant rate without one).
    max_epochs : int, default=200
        Upper bound on epochs (the step budget usually ends training first).
    max_steps : int or None, default={steps}
        Optimizer-step budget: ``min(max_epochs, ceil(max_steps / batches per epoch))``
        epochs are run. None: ``max_epochs`` epochs.{steps_note}
    batch_size : int, default=32
        Items per mini-batch (utterances; segments for DFT-CNN training).
    crop_frames : int or None, default=100
        Train on random windows of this many frames, drawn afresh every epoch
        (shorter items are used whole). None: whole utterances. DFT-CNN trains on
        single segments, which crops never cut.
    max_batch_frames : int or None, default=16384
        Memory budget: no training, validation or prediction batch holds more padded
        frames (items x longest item). A longer utterance goes alone; in training it is
        cut to a random window of this length (with a warning). None: no bound.
    lr_schedule : {{"onecycle", None}}, default="onecycle"
        One-cycle schedule over the planned steps (30 % warm-up), or a constant ``lr``.
    train_split : "auto", None or callable, default="auto"
        "auto": hold out whole speakers when ``fit`` gets ``groups``, else a stratified
        ``valid_fraction`` of the utterances; no validation when the data are too small
        (see the module docstring). None: no validation. A callable (e.g.
        ``skorch.dataset.ValidSplit``) is used as in skorch.
    valid_fraction : float or "auto", default="auto"
        Share of the speakers (of the utterances without ``groups``) held out for
        validation by ``train_split="auto"``. ``"auto"``: 0.2 when ``patience`` is set
        or a callback monitors a ``valid_*`` score (early stopping needs it), else 0, so
        that without early stopping every utterance is trained on (held-out data that
        only the log reads cost 0.5 to 7.6 points, ``bench/results/training_length.json``).
        Set a number to see ``valid_loss``/``valid_acc`` in ``history_`` anyway.
    patience : int or None, default=None
        Early stopping patience in epochs (monitors ``valid_loss``, or ``train_loss``
        without validation); the best epoch's weights are restored. None trains the
        whole budget.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss, as in scikit-learn: ``"balanced"`` weighs
        each class by ``n_utterances / (n_classes * count)``; a dict maps labels to
        weights (missing labels weigh 1). Multiplies ``fit``'s ``sample_weight``.
    progress : bool, default=False
        Show a tqdm bar over epochs on stderr where a bar can be read (a terminal or a
        notebook; it stays when training ends); when stderr is a file or a pipe, about ten
        plain lines per fit instead (``DACNNClassifier: epoch 8/40, train_loss 0.532``).
        ``verbose=1`` prints skorch's table, one line per epoch (coloured on a terminal only).
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and the validation split inside a
        forked torch RNG state (the global RNG state is left untouched). The same
        seed gives identical predictions on CPU.
    iterator_train, iterator_valid : default=BucketIterator
        Length-bucketed batching; any skorch/torch iterator works (the padding
        ``collate_fn`` is passed unless ``iterator_train__collate_fn`` is set).
    callbacks : list or None
        Extra skorch callbacks.
    device : str, default="cpu"
    verbose : int, default=0
        0 is silent; 1 prints skorch's epoch table.
    **kwargs
        Any other skorch parameter (``module__*``, ``optimizer__*``,
        ``iterator_train__*``, ``callbacks__*``, ``warm_start``, ...).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
        Features per frame seen in fit.
    train_plan_ : TrainingPlan
        The last fit's plan (a frozen dataclass; ``as_dict()`` gives a dict): ``epochs``,
        ``steps_per_epoch``, ``steps``, ``n_train``, ``n_valid`` (items) and
        ``valid_speakers`` (held-out speakers, or None).
    module_ : torch.nn.Module
    history_ : skorch History
"""


class SACNNClassifier(_UtteranceClassifier):
    __doc__ = (
        """Single attention pooling CNN (SA-CNN) as a scikit-learn classifier.

    Takes an utterance set of log filter-bank frames ``(n_frames, 24)`` (e.g. the
    output of :class:`~devicepool.features.FilterBank`) of any length >= 1 frame and
    predicts the recording device. See :class:`devicepool.models.SACNN`.
"""
        + _COMMON_PARAMS.format(module="SACNN", width="n_bands", steps=400, steps_note="")
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from devicepool.estimators import SACNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(40, 24)).astype("float32") + (i % 2) for i in range(20)]
    >>> y = ["phone" if i % 2 else "laptop" for i in range(20)]
    >>> clf = SACNNClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape
    (2,)
    """
    )
    _module_cls = SACNN

    def attention_weights(self, X):
        """Time attention weights per utterance (the data of the paper's Fig. 2).

        Returns
        -------
        list of ndarray
            One float32 array of shape ``(ceil(n_frames / 4),)`` per utterance
            (valid output frames only), summing to 1. (:meth:`predict_outputs` gives
            them together with the predictions, as the same type for every model.)
        """
        return self.predict_outputs(X).attention.time


class DACNNClassifier(_UtteranceClassifier):
    __doc__ = (
        """Dual attention pooling CNN (DA-CNN) as a scikit-learn classifier.

    Takes an utterance set of log filter-bank frames ``(n_frames, 24)`` of any
    length >= 1 frame and predicts the recording device.
    See :class:`devicepool.models.DACNN`.
"""
        + _COMMON_PARAMS.format(module="DACNN", width="n_bands", steps=400, steps_note="")
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from devicepool.estimators import DACNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(40, 24)).astype("float32") + (i % 2) for i in range(20)]
    >>> y = np.arange(20) % 2
    >>> clf = DACNNClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> att = clf.attention_weights(X[:3])
    >>> len(att["time"]), att["time"][0].shape, att["band"].shape
    (3, (10,), (3, 24))
    """
    )
    _module_cls = DACNN

    def attention_weights(self, X):
        """Time and band attention weights (the data of the paper's Fig. 2).

        Returns
        -------
        AttentionWeights
            ``time``: list of float32 arrays ``(ceil(n_frames / 4),)``, one per
            utterance, each summing to 1; ``band``: float32 ndarray
            ``(n_utterances, n_bands)``, rows summing to 1; ``time_reduction`` 4. Reads
            like the Bunch of 0.5 (``att["band"]``). (:meth:`predict_outputs` gives it
            together with the predictions.)
        """
        return self.predict_outputs(X).attention


_DFT_STEPS = """
        Twice the other networks' 400: a step here is a batch of 0.5 s segments where
        theirs is a batch of 1 s crops, so at 800 steps the DFT-CNN trains on as much
        audio as they do at 400. 800 steps are within 1 point of 3,200 on the embedded
        corpus and on real speech (``bench/results/training_length.json``)."""


class DFTCNNClassifier(_UtteranceClassifier):
    __doc__ = (
        """DFT-CNN baseline (Verma & Khanna style) as a scikit-learn classifier.

    Takes an utterance set of 0.5 s magnitude spectra ``(n_segments, 4001)`` (the
    output of :class:`~devicepool.features.DFTMagnitude`). Training uses every
    segment as a sample labelled with its utterance's label (``batch_size`` counts
    segments; the internal validation split keeps the segments of one utterance
    together). An utterance is predicted from the **mean of its segments'
    log-probabilities**: ``predict_proba = softmax(mean_s log p(c | segment s))``,
    the normalised geometric mean of the segment posteriors; ``predict`` is its
    argmax. See :class:`devicepool.models.DFTCNN`.
"""
        + _COMMON_PARAMS.format(module="DFTCNN", width="n_bins", steps=800, steps_note=_DFT_STEPS)
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from devicepool.estimators import DFTCNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = [np.abs(rng.normal(size=(3, 257))).astype("float32") * (1 + i % 2)
    ...      for i in range(12)]
    >>> y = np.arange(12) % 2
    >>> clf = DFTCNNClassifier(max_epochs=3, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """
    )
    _module_cls = DFTCNN

    def __init__(self, module=None, *, max_steps=800, **kwargs):
        super().__init__(module, max_steps=max_steps, **kwargs)

    def _training_items(self, Xs, y_enc):
        counts = np.array([len(a) for a in Xs])
        segments = [seg[None, :] for a in Xs for seg in a]
        return segments, np.repeat(y_enc, counts), np.repeat(np.arange(len(Xs)), counts)
