"""The common machinery of the three classifiers: a skorch ``NeuralNetClassifier`` over
utterance sets, driving any network that keeps the module contract
(:mod:`devicepool.models._contract`)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochTimer, PassthroughScoring
from torch.utils.data import Dataset

from .._typing import ArrayLike, FeatureSet, PathLike
from .._validation import Interval, StrOptions, check_feature_set, validate_params, where
from ..models import check_module
from ..persistence import dump, load
from ._callbacks import (
    EarlyStoppingBest,
    EpochProgress,
    OneCycleSchedule,
    PlainPrintLog,
    StopTraining,
    UserInterrupt,
    ValidAccuracy,
)
from ._data import (
    BucketIterator,
    CropCollate,
    UtteranceDataset,
    _auto_split,
    _dataset_lengths,
    collate_utterances,
)
from ._inference import UtteranceOutputs, run_network
from ._plan import length_cap, training_plan, warn_budget_crops
from ._targets import check_target, encode_target, known_label_accuracy
from ._weights import utterance_weights, weighted_mean

__all__ = ["UtteranceOutputs"]  # re-exported: the type predict_outputs returns


class _UtteranceClassifier(NeuralNetClassifier):
    """Common machinery of the three classifiers (see the subclasses' docstrings)."""

    # with metadata routing on, a Pipeline hands its ``groups`` here by default
    __metadata_request__fit = {"groups": True}
    _module_cls = None

    _parameter_constraints = {
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_steps": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"),
                       Interval(numbers.Integral, -1, -1, closed="both")],
        "crop_frames": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "lr_schedule": [StrOptions({"onecycle"}), None],
        "train_split": [StrOptions({"auto"}), None, "callable"],
        "valid_fraction": [Interval(numbers.Real, 0, 1, closed="left"), StrOptions({"auto"})],
        "patience": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_batch_frames": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "progress": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        module=None,
        *,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        max_epochs=200,
        max_steps=400,
        batch_size=32,
        crop_frames=100,
        max_batch_frames=16384,
        lr_schedule="onecycle",
        train_split="auto",
        valid_fraction="auto",
        patience=None,
        class_weight=None,
        progress=False,
        random_state=None,
        iterator_train=BucketIterator,
        iterator_valid=BucketIterator,
        callbacks=None,
        device="cpu",
        verbose=0,
        **kwargs,
    ):
        super().__init__(
            module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, train_split=train_split, iterator_train=iterator_train,
            iterator_valid=iterator_valid, callbacks=callbacks, device=device, verbose=verbose,
            **kwargs,
        )
        self.max_steps = max_steps
        self.crop_frames = crop_frames
        self.max_batch_frames = max_batch_frames
        self.lr_schedule = lr_schedule
        self.valid_fraction = valid_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.progress = progress
        self.random_state = random_state

    def __repr__(self):
        """scikit-learn's form: the class and the parameters that differ from the defaults,
        e.g. ``DACNNClassifier(max_steps=20)`` (skorch's repr shows only the module)."""
        try:
            default = type(self)().get_params(deep=False)
        except TypeError:  # a subclass with required parameters: show them all
            default = {}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if not k.startswith("_") and (k not in default or repr(v) != repr(default[k]))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _get_param_names(self):
        # set_fit_request() stores _metadata_request on the instance; it is no
        # constructor parameter (skorch < 1.4 listed it, which broke clone())
        return [k for k in super()._get_param_names() if k != "_metadata_request"]

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
        tags.non_deterministic = self.random_state is None
        tags.input_tags.allow_nan = False
        return tags

    # ---- skorch hooks -------------------------------------------------------
    @property
    def _default_callbacks(self):
        cbs = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", ValidAccuracy()),
            ("print_log", PlainPrintLog()),
        ]
        if self.lr_schedule == "onecycle":  # checked in fit
            cbs.append(("lr_schedule", OneCycleSchedule()))
        if self.patience is not None:
            cbs.append(("early_stopping", EarlyStoppingBest(patience=self.patience)))
        if self.progress:
            cbs.append(("progress", EpochProgress()))
        return cbs

    @property
    def classes_(self):
        try:
            return self.fitted_classes_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'classes_' (not fitted yet)"
            ) from None

    def __sklearn_is_fitted__(self):
        return hasattr(self, "fitted_classes_") and getattr(self, "initialized_", False)

    def initialize_module(self):
        """Build the network from the contract's ``n_classes`` and ``n_features`` (the
        data's) and ``module__*`` parameters, then check the contract."""
        if not hasattr(self, "fitted_classes_"):
            raise NotFittedError(
                f"{type(self).__name__}: the module size depends on the data; call fit first"
            )
        kwargs = self.get_params_for("module")
        kwargs.setdefault("n_classes", len(self.fitted_classes_))
        kwargs.setdefault("n_features", int(self.n_features_in_))
        module = self._module_cls if self.module is None else self.module
        module = self.initialized_instance(module, kwargs)
        check_module(module, n_classes=len(self.fitted_classes_),
                     n_features=int(self.n_features_in_))
        self.module_ = module.to(self.device)
        return self

    def _length_cap(self, lengths):
        return length_cap(self.crop_frames, self.max_batch_frames, lengths)

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        cap = self._length_cap(_dataset_lengths(dataset)) if training else None
        if cap is not None:
            kwargs["collate_fn"] = CropCollate(cap, kwargs.get("collate_fn", collate_utterances))
        kwargs.setdefault("collate_fn", collate_utterances)
        if training:
            kwargs.setdefault("shuffle", True)
        if isinstance(iterator, type) and issubclass(iterator, BucketIterator):
            kwargs.setdefault("max_frames", self.max_batch_frames)
            kwargs.setdefault("length_cap", cap)
        return iterator(dataset, **kwargs)

    def get_split_datasets(self, X, y=None, **fit_params):
        planned = getattr(self, "_planned_split", None)
        if planned is not None:  # worked out once in fit (the step plan needs its size)
            return planned
        dataset = self.get_dataset(X, y)
        if self.train_split == "auto":
            return _auto_split(dataset, self._valid_fraction(), self.split_seed_)
        if not self.train_split:
            return dataset, None
        return self.train_split(dataset, y, **fit_params)

    def _valid_fraction(self):
        """The hold-out fraction in use: ``valid_fraction``, where ``"auto"`` is 0.2 with
        early stopping (``patience`` set, or a callback monitoring a ``valid_*`` score, such
        as skorch's ``EarlyStopping``) and 0 without, when nothing would use it."""
        if self.valid_fraction == "auto":
            cbs = [c[1] if isinstance(c, tuple) else c for c in self.callbacks or []]
            used = self.patience is not None or any(
                str(getattr(cb, "monitor", "")).startswith("valid") for cb in cbs)
            return 0.2 if used else 0.0
        return float(self.valid_fraction)

    # ---- validation helpers -------------------------------------------------
    def _check_X(self, X, reset):
        return check_feature_set(X, n_features=None if reset else self.n_features_in_,
                                 owner=type(self).__name__)

    def _check_params(self):
        validate_params(self.get_params(deep=False), self._parameter_constraints,
                        owner=type(self).__name__)

    def _check_y(self, y, n):
        return check_target(y, n, type(self).__name__)

    def _encode_classes(self, y, Xs, warm):
        """Set ``fitted_classes_`` and ``n_features_in_``; return ``y`` encoded."""
        if warm:
            classes = self.fitted_classes_
            if Xs[0].shape[1] != self.n_features_in_:
                self._check_X(Xs, reset=False)
        else:
            classes = None if self.classes is None else np.asarray(self.classes)
        classes, y_enc = encode_target(y, classes, type(self).__name__, sorted_classes=warm)
        self.fitted_classes_ = classes
        self.n_features_in_ = Xs[0].shape[1]
        return y_enc

    def _seed(self):
        rs = self.random_state
        if rs is None:
            return None
        if isinstance(rs, numbers.Integral):
            return int(rs) % (2**63 - 1)
        return int(check_random_state(rs).randint(0, 2**31 - 1))

    def _rng_devices(self):
        dev = torch.device(self.device) if isinstance(self.device, (str, torch.device)) else None
        if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
            return [dev.index or 0]
        return []

    def _training_items(self, Xs, y_enc):
        """Items to train on (utterances; segments for DFT-CNN) and their groups."""
        return Xs, y_enc, np.arange(len(Xs))

    # ---- fit ------------------------------------------------------------------
    def fit(self, X: FeatureSet, y: ArrayLike, groups: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None, **fit_params: Any) -> _UtteranceClassifier:
        """Fit on an utterance set.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames, n_features)
            Utterance set (see :mod:`devicepool.estimators` for accepted forms).
        y : array-like of shape (n_utterances,)
            Labels of any hashable, sortable type (e.g. device names).
        groups : array-like of shape (n_utterances,), optional
            Speaker of each utterance. With ``train_split="auto"`` the internal
            validation set then holds out whole speakers, so early stopping and the
            choice of the best epoch are judged on unseen speakers, as the test is.
            Inside a ``Pipeline`` or ``cross_validate`` it arrives through
            scikit-learn's metadata routing (``clf.set_fit_request(groups=True)``).
        sample_weight : array-like of shape (n_utterances,), optional
            Weight of each utterance in the loss (times its class's ``class_weight``);
            a batch's loss is the weighted mean (see :mod:`devicepool.estimators._weights`).
        **fit_params
            Passed on to skorch (``forward``/``train_split``).

        Returns
        -------
        self
        """
        self._check_params()
        check_torch_device(self.device, f"{type(self).__name__}: device={self.device!r}", "device='cpu'")
        Xs = self._check_X(X, reset=True)
        y = self._check_y(y, len(Xs))
        if groups is not None:
            groups = np.asarray(groups)
            if groups.ndim != 1 or len(groups) != len(Xs):
                raise ValueError(
                    f"groups must be 1-D with one speaker per utterance ({len(Xs)}); "
                    f"got shape {groups.shape}"
                )
        warm = self.warm_start and self.__sklearn_is_fitted__()
        y_enc = self._encode_classes(y, Xs, warm)
        seed = self._seed()
        self.split_seed_ = (
            seed % (2**32) if seed is not None else int(np.random.default_rng().integers(2**31))
        )
        items, y_items, utt = self._training_items(Xs, y_enc)
        weights = utterance_weights(y_enc, self.fitted_classes_, sample_weight, self.class_weight,
                                    type(self).__name__)
        dataset = UtteranceDataset(items, y_items, utt,
                                   speakers=None if groups is None else groups[utt],
                                   weights=None if weights is None else weights[utt])
        with torch.random.fork_rng(devices=self._rng_devices(), enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if not warm:
                self.initialize()
                self._fit_input_statistics(items)
            self._train(dataset, **fit_params)
        return self

    def _fit_input_statistics(self, items):
        fit_stats = getattr(self.module_, "fit_input_statistics", None)
        if callable(fit_stats):  # one block per utterance (the contract's)
            fit_stats(torch.from_numpy(np.asarray(x)) for x in items)

    def _train(self, dataset, **fit_params):
        self._planned_split = self.get_split_datasets(dataset, dataset.y)
        self._warn_budget_crops(self._planned_split[0])
        try:
            self.train_plan_ = self._plan(*self._planned_split)
            NeuralNetClassifier.partial_fit(self, dataset, dataset.y,
                                            epochs=self.train_plan_.epochs, **fit_params)
        except UserInterrupt:
            for _, cb in getattr(self, "callbacks_", []):
                if isinstance(cb, EpochProgress):
                    cb.abandon()
            raise KeyboardInterrupt from None  # a user's Ctrl-C aborts fit
        finally:
            del self._planned_split

    def _warn_budget_crops(self, train):
        warn_budget_crops(_dataset_lengths(train), self.crop_frames, self.max_batch_frames)

    def infer(self, x, **fit_params):
        if isinstance(x, dict) and "sample_weight" in x:  # the loss's, not the module's
            x = {k: v for k, v in x.items() if k != "sample_weight"}
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weight = X.get("sample_weight") if isinstance(X, dict) else None
        if weight is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        reduction = self.criterion_.reduction
        self.criterion_.reduction = "none"
        try:
            per_item = super().get_loss(y_pred, y_true, X=X, training=training)
        finally:
            self.criterion_.reduction = reduction
        return weighted_mean(per_item, weight.to(per_item.device))

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            if isinstance(exc, StopTraining) or self._callback_stopped():
                raise  # skorch ends training normally
            raise UserInterrupt() from exc  # Ctrl-C: abort the fit, never "finish" it

    def _callback_stopped(self):
        """Whether a skorch ``EarlyStopping`` callback ended training (it raises a plain
        ``KeyboardInterrupt``)."""
        from skorch.callbacks import EarlyStopping

        return any(isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
                   for _, cb in getattr(self, "callbacks_", []))

    def _plan(self, train, valid):
        """The fit's plan (:func:`~devicepool.estimators._plan.training_plan`)."""
        n_batches = None
        if isinstance(train, Dataset) and isinstance(self.iterator_train, type) and \
                issubclass(self.iterator_train, BucketIterator):
            n_batches = len(self.get_iterator(train, training=True))  # the budget's cuts
        return training_plan(train, valid, batch_size=self.batch_size,
                             max_epochs=self.max_epochs, max_steps=self.max_steps,
                             n_batches=n_batches)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training a fitted classifier on ``(X, y)`` (fits it if not fitted)."""
        if not self.__sklearn_is_fitted__():
            return self.fit(X, y, **fit_params)
        old = self.warm_start
        self.warm_start = True
        try:
            return self.fit(X, y, **fit_params)
        finally:
            self.warm_start = old

    # ---- inference ------------------------------------------------------------
    def _run(self, X, attention):
        """One forward pass per memory-bounded batch (:func:`run_network`)."""
        check_is_fitted(self)
        Xs = self._check_X(X, reset=False)
        bs = self.batch_size if self.batch_size != -1 else len(Xs)
        return run_network(self.module_, Xs, batch_size=bs, device=self.device,
                           attention=attention, max_frames=self.max_batch_frames)

    def predict_outputs(self, X: FeatureSet) -> UtteranceOutputs:
        """Logits, embeddings and attention weights from one forward pass.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames, n_features)

        Returns
        -------
        UtteranceOutputs
            ``logits`` ``(n_utterances, n_classes)``, ``embedding`` ``(n_utterances,
            embedding_dim)``, ``attention`` (:class:`~devicepool.models.AttentionWeights`
            with numpy arrays, or None). ``classes_[logits.argmax(1)]`` is
            ``predict(X)``.
        """
        return self._run(X, attention=True)

    def _logits(self, X):
        return self._run(X, attention=False).logits

    def predict_proba(self, X: FeatureSet) -> np.ndarray:
        """Class probabilities ``(n_utterances, n_classes)``, columns in ``classes_`` order."""
        return torch.softmax(torch.from_numpy(self._logits(X)), dim=1).numpy()

    def predict(self, X: FeatureSet) -> np.ndarray:
        """Predicted labels ``(n_utterances,)`` (values from ``classes_``)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def predict_log_proba(self, X):
        """Log class probabilities ``(n_utterances, n_classes)``."""
        return torch.log_softmax(torch.from_numpy(self._logits(X)), dim=1).numpy()

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; labels not seen in ``fit`` raise ValueError."""
        return known_label_accuracy(self, X, y, sample_weight)

    def transform(self, X: FeatureSet) -> np.ndarray:
        """Pooled utterance embeddings ``(n_utterances, embedding_dim)`` float32.

        What the classification network reads: SA-CNN ``K`` of eq. 1 (20 x 12 = 240
        values; 20 with ``module__band_pooling="mean"``); DA-CNN ``K'`` of eq. 2 in its
        band-preserving reading (40 x 24 = 960 values; 40 with
        ``module__band_pooling="sum"``); DFT-CNN the mean over segments of the 128-d
        hidden layer.
        """
        return self._run(X, attention=False).embedding

    def fit_transform(self, X, y, **fit_params):
        """``fit(X, y)`` then ``transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)

    # ---- persistence ----------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Save weights, parameters and ``classes_`` without pickled code.

        The file (of :func:`devicepool.persistence.dump`) holds only tensors, strings,
        numbers, lists and dicts, so :meth:`load` (and ``torch.load(path,
        weights_only=True)``) reads it safely. Parameters that are not plain values
        (custom callbacks, a module/optimizer/criterion class, a train_split object)
        are not stored: :meth:`load` uses the class defaults for them unless given
        as keyword overrides. Weights are stored on the CPU.

        Parameters
        ----------
        path : str or os.PathLike
        """
        check_is_fitted(self)
        dump(self, path)

    @classmethod
    def load(cls, path: PathLike, device: str | torch.device = "cpu",
             **overrides: Any) -> _UtteranceClassifier:
        """Load a classifier written by :meth:`save` (``weights_only`` loading).

        Parameters
        ----------
        path : str or os.PathLike
        device : str, default="cpu"
            Device to put the module on (a model trained on CUDA loads on CPU).
        **overrides
            Constructor parameters replacing stored ones.

        Returns
        -------
        classifier : fitted instance of ``cls``
        """
        est = load(path, device=device, **overrides)
        if type(est) is not cls:
            raise ValueError(f"{where(path=path)} holds a {type(est).__name__}, not a {cls.__name__}")
        return est



def check_torch_device(device, who, cpu_hint):
    """The ``torch.device`` of ``device``, or a ``ValueError`` starting with ``who`` (e.g.
    ``"DACNNClassifier: device='cuda'"`` or ``"--device cuda"``) for one this torch cannot
    use, suggesting ``cpu_hint`` (torch's own error is an ``AssertionError`` deep in the
    first batch). One check for the estimators and the command line."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{who} is not a torch device (e.g. cpu, cuda, cuda:1, mps; lower case)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        build = ("a CPU-only build" if torch.version.cuda is None
                 else f"a CUDA {torch.version.cuda} build that finds no usable GPU")
        raise ValueError(f"{who}: this torch ({torch.__version__}) is {build}; use {cpu_hint}, or "
                         "install a CUDA build of torch (see the README)")
    n = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and dev.index is not None and dev.index >= n:
        raise ValueError(f"{who}: this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"{who}: this torch has no usable MPS (Apple GPU) device")
    return dev
