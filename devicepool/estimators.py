"""scikit-learn classifiers wrapping the SA-CNN, DA-CNN and DFT-CNN modules (skorch).

The classifiers take an *utterance set*: a list (or 1-D object array) of per-utterance
float arrays ``(n_frames, n_features)`` of any length, e.g. the output of
:class:`~devicepool.features.FilterBank` (SA/DA-CNN) or
:class:`~devicepool.features.DFTMagnitude` (DFT-CNN). A 3-D numeric array
``(n_utterances, n_frames, n_features)`` is a set of equal-length utterances, and a
2-D numeric array ``(n_utterances, n_features)`` -- the tabular convention -- is read
as a set of one-frame utterances (one segment each for DFT-CNN).

Batches are padded per batch and masked: padding never changes a prediction.

Training (devicepool's recipe; the paper gives only Adam, cross-entropy and "stop when
the validation error increases", and that reading underfits small corpora, see
``docs/models.md``):

* **random crops**: each training utterance is cut to a random window of
  ``crop_frames`` frames, drawn afresh every epoch (shorter utterances are used whole,
  masked); prediction always sees whole utterances;
* **a step budget**: training lasts ``max_steps`` optimizer steps (rounded up to whole
  epochs, at most ``max_epochs``), so a corpus of 300 utterances gets as many updates as
  one of 30,000, and cost follows steps, not corpus size;
* **one-cycle learning rate** (``lr_schedule="onecycle"``): warm-up to ``lr`` over the
  first 30 % of the steps, cosine annealing after (skorch's ``LRScheduler`` with
  torch's ``OneCycleLR``);
* **internal validation** (``train_split="auto"``): with ``fit(X, y, groups=speakers)``
  whole speakers are held out (``round(valid_fraction * n_speakers)``, at least one), so
  validation is judged on unseen speakers as the test is; without groups, 20 % of the
  utterances stratified by class. When the data are too small to hold anything out, no
  validation is used. With ``patience`` set, training stops after ``patience`` epochs
  without a better validation loss and the best epoch's weights are restored; the
  default (``None``) trains the whole budget and reports the validation loss and
  accuracy in ``history_``.

The defaults (``crop_frames=100``, ``max_steps=400``, ``batch_size=32``, ``lr=3e-3``) were
chosen by measurement on the embedded corpus (``docs/models.md``,
``docs/performance.md``). ``crop_frames=None, max_steps=None, lr_schedule=None,
lr=1e-3, batch_size=16, max_epochs=30, patience=5`` is the earlier, paper-like recipe.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import sys
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochTimer, LRScheduler, PassthroughScoring, PrintLog
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import Dataset, Subset

from .models import DACNN, DFTCNN, SACNN

__all__ = [
    "SACNNClassifier",
    "DACNNClassifier",
    "DFTCNNClassifier",
    "UtteranceDataset",
    "BucketIterator",
    "collate_utterances",
]

_FORMAT = "devicepool.estimator"
_FORMAT_VERSION = 2  # 2: the module's readings (band_pooling, batch_norm) are stored


# --------------------------------------------------------------------------- data

def _check_utterance_set(X, *, name="X", n_features=None, estimator_name="estimator"):
    """Validate an utterance set and return a list of C-contiguous float32 2-D arrays.

    Raises ValueError / TypeError naming the offending utterance index and the rule.
    """
    if X is None:
        raise TypeError(f"{name} must be an utterance set, got None")
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name}: sparse input is not supported; pass dense feature arrays")
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} must be a set of feature arrays, not a path or string; extract "
            "features first (e.g. with devicepool.features.FilterBank)"
        )
    arr = None
    if isinstance(X, np.ndarray) and (X.dtype != object or X.ndim >= 2):
        arr = X
    elif not isinstance(X, np.ndarray) and not isinstance(X, (list, tuple)):
        try:
            arr = np.asarray(X)  # e.g. pandas DataFrame, torch tensor
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} of type {type(X).__name__} is not an utterance set") from exc
        if arr.dtype == object:
            X, arr = list(arr), None
    elif isinstance(X, (list, tuple)) and len(X) and not isinstance(X[0], np.ndarray):
        # a list of lists may be a plain rectangular numeric table
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cand = np.asarray(X)
            if cand.dtype.kind in "biufc" and cand.ndim in (2, 3):
                arr = cand
        except (ValueError, TypeError):
            arr = None

    if arr is not None:
        if arr.dtype.kind == "c":
            raise ValueError(f"{name}: Complex data not supported")
        if arr.ndim in (2, 3) and arr.shape[-1] == 0:
            raise ValueError(
                f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
            )
        if arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(np.float32)
            except TypeError as exc:
                raise TypeError(f"{name} could not be converted to float: {exc}") from exc
            except ValueError as exc:
                raise ValueError(f"{name} could not be converted to float: {exc}") from exc
        if arr.ndim == 2:
            arr = arr[:, None, :]
        elif arr.ndim != 3:
            raise ValueError(
                f"{name} must be an utterance set: a sequence of (n_frames, n_features) arrays, "
                f"a 3-D array (n_utterances, n_frames, n_features) or a 2-D array of one-frame "
                f"utterances (n_utterances, n_features); got a {arr.ndim}-D array of shape "
                f"{arr.shape}. Reshape your data, e.g. X.reshape(1, -1) for a single row."
            )
        items = list(arr)
    else:
        items = list(X)

    if len(items) == 0:
        raise ValueError(f"{name} is an empty utterance set (0 utterances); need at least 1")
    out = []
    width = None
    for i, u in enumerate(items):
        if isinstance(u, (str, bytes, os.PathLike)):
            raise TypeError(
                f"{name}[{i}] is a path or string; extract features first (e.g. FilterBank)"
            )
        if hasattr(u, "toarray"):
            raise TypeError(f"{name}[{i}]: sparse input is not supported")
        try:
            a = np.asarray(u)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name}[{i}] of type {type(u).__name__} is not an array") from exc
        if a.dtype.kind == "c":
            raise ValueError(f"{name}[{i}]: Complex data not supported")
        if a.dtype.kind not in "biuf":
            try:
                a = a.astype(np.float32)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"{name}[{i}] could not be converted to float (dtype {a.dtype}): {exc}"
                ) from exc
        if a.ndim != 2:
            raise ValueError(
                f"{name}[{i}] has shape {a.shape}; every utterance must be a 2-D array "
                "(n_frames, n_features), time first"
            )
        if a.shape[0] < 1:
            raise ValueError(f"{name}[{i}] has 0 frames; every utterance needs at least 1 frame")
        if a.shape[1] < 1:
            raise ValueError(f"{name}[{i}] has 0 features per frame")
        if width is None:
            width = a.shape[1]
        elif a.shape[1] != width:
            raise ValueError(
                f"{name}[{i}] has {a.shape[1]} features per frame but {name}[0] has {width}; "
                "all utterances must have the same feature width"
            )
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError(
                f"{name}[{i}] contains NaN or infinity; features must be finite"
            )
        out.append(a)
    if n_features is not None and width != n_features:
        raise ValueError(
            f"X has {width} features, but {estimator_name} is expecting {n_features} "
            "features as input (feature width per frame)."
        )
    return out


class UtteranceDataset(Dataset):
    """Torch dataset over a list of ``(n_frames, n_features)`` float32 arrays.

    Parameters
    ----------
    X : list of ndarray
    y : ndarray of int64, optional
        Encoded labels (``0 .. n_classes-1``).
    groups : ndarray of int, optional
        Utterance index of each item (used when items are DFT segments so that the
        internal validation split never separates the segments of one utterance).
    speakers : ndarray, optional
        Speaker (or any grouping) of each item; when given, the internal validation
        split holds out whole speakers.
    """

    def __init__(self, X, y=None, groups=None, speakers=None):
        self.X = X
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        self.speakers = None if speakers is None else np.asarray(speakers)
        self.lengths = np.fromiter((len(a) for a in X), dtype=np.int64, count=len(X))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], (-1 if self.y is None else int(self.y[i]))


def _dataset_lengths(ds):
    if isinstance(ds, Subset):
        return _dataset_lengths(ds.dataset)[np.asarray(ds.indices)]
    if hasattr(ds, "lengths"):
        return np.asarray(ds.lengths)
    return np.array([len(ds[i][0]) for i in range(len(ds))])


def collate_utterances(items):
    """Pad a list of ``(array, label)`` pairs into ``({"x", "lengths"}, y)`` tensors."""
    lengths = np.fromiter((len(a) for a, _ in items), dtype=np.int64, count=len(items))
    T = int(lengths.max())
    F = items[0][0].shape[1]
    x = np.zeros((len(items), T, F), dtype=np.float32)
    for b, (a, _) in enumerate(items):
        x[b, : len(a)] = a
    y = torch.as_tensor(np.fromiter((t for _, t in items), dtype=np.int64, count=len(items)))
    return {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lengths)}, y


class CropCollate:
    """Training ``collate_fn``: a random window of ``crop_frames`` frames of each item.

    Every item longer than ``crop_frames`` is cut to a window starting at a uniformly
    drawn frame (torch's global generator, so a fit seeded by ``random_state`` draws
    the same windows); shorter items are used whole and padded/masked by
    :func:`collate_utterances`. A window never leaves its utterance. A new window is
    drawn each time an item is batched, i.e. afresh every epoch.

    Parameters
    ----------
    crop_frames : int
    collate_fn : callable, default=collate_utterances
    """

    def __init__(self, crop_frames, collate_fn=collate_utterances):
        self.crop_frames = int(crop_frames)
        self.collate_fn = collate_fn

    def __call__(self, items):
        c = self.crop_frames
        lengths = [len(a) for a, _ in items]
        starts = torch.randint(0, 2**62, (len(items),)).tolist()
        out = []
        for (a, t), n, r in zip(items, lengths, starts):
            if n > c:
                s0 = r % (n - c + 1)
                a = a[s0:s0 + c]
            out.append((a, t))
        return self.collate_fn(out)


class BucketIterator:
    """Length-bucketed mini-batches (the default ``iterator_train``/``iterator_valid``).

    With ``shuffle=True`` the items are shuffled, cut into pools of
    ``batch_size * pool_batches`` items, each pool is sorted by length and cut into
    batches, and the batch order is shuffled; so batches hold similar lengths (little
    padding) while the epoch stays random. With ``shuffle=False`` items are sorted by
    length. Randomness comes from torch's global generator (the classifiers seed it
    inside a forked RNG state when ``random_state`` is set).
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, pool_batches=16,
                 collate_fn=collate_utterances, drop_last=False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.pool_batches = int(pool_batches)
        self.collate_fn = collate_fn
        self.drop_last = drop_last

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self):
        lengths = _dataset_lengths(self.dataset)
        n, bs = len(lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(lengths, kind="stable")
            batches = [order[i:i + bs] for i in range(0, n, bs)]
        else:
            perm = torch.randperm(n).numpy()
            pool = bs * self.pool_batches
            batches = []
            for s in range(0, n, pool):
                chunk = perm[s:s + pool]
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
                batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
            batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        return batches

    def __iter__(self):
        for b in self._batches():
            yield self.collate_fn([self.dataset[int(i)] for i in b])


def _speaker_split(dataset, fraction, seed):
    """Hold out whole speakers: ``round(fraction * n_speakers)`` of them (at least 1).

    Returns ``(train, valid)`` Subsets, or ``None`` when fewer than 2 speakers exist
    or no draw of held-out speakers leaves every class in the training part.
    """
    speakers = dataset.speakers
    uniq = np.unique(speakers)
    if len(uniq) < 2 or fraction <= 0:
        return None
    n_valid = min(len(uniq) - 1, max(1, int(round(fraction * len(uniq)))))
    rng = np.random.default_rng(seed)
    n_classes = len(np.unique(dataset.y))
    for _ in range(20):
        held = rng.choice(uniq, size=n_valid, replace=False)
        in_valid = np.isin(speakers, held)
        if len(np.unique(dataset.y[~in_valid])) == n_classes:
            return (Subset(dataset, np.flatnonzero(~in_valid)),
                    Subset(dataset, np.flatnonzero(in_valid)))
    return None


def _auto_split(dataset, fraction, seed):
    """Internal validation split of whole utterances (whole speakers when known).

    With ``dataset.speakers`` the held-out part is a set of whole speakers
    (:func:`_speaker_split`); otherwise a stratified hold-out of utterances. Returns
    ``(train, None)`` with a warning when the data are too small to hold anything out.
    """
    if dataset.speakers is not None:
        split = _speaker_split(dataset, fraction, seed)
        if split is not None:
            return split
        if fraction > 0:
            warnings.warn(
                f"no speaker-disjoint validation split is possible ({len(np.unique(dataset.speakers))}"
                " speaker(s), or holding any out leaves a class without training data); "
                "training without validation", UserWarning, stacklevel=4)
        return dataset, None
    groups = dataset.groups
    uniq, first = np.unique(groups, return_index=True)
    u_labels = dataset.y[first]
    classes, counts = np.unique(u_labels, return_counts=True)
    n_u, n_c = len(uniq), len(classes)
    n_valid = max(n_c, int(math.ceil(fraction * n_u)))
    if counts.min() < 2 or n_u - n_valid < n_c or fraction <= 0:
        return dataset, None
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    tr_u, va_u = next(sss.split(np.zeros(n_u), u_labels))
    in_valid = np.isin(groups, uniq[va_u])
    return Subset(dataset, np.flatnonzero(~in_valid)), Subset(dataset, np.flatnonzero(in_valid))


# ---------------------------------------------------------------------- callbacks

class ValidAccuracy(Callback):
    """Records ``valid_acc`` (accuracy of the internal validation batches) per epoch."""

    def on_epoch_begin(self, net, **kwargs):
        self.correct_, self.total_ = 0, 0

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if training or y_pred is None:
            return
        yi = batch[1]
        self.correct_ += int((y_pred.argmax(1).cpu() == yi.cpu()).sum())
        self.total_ += len(yi)

    def on_epoch_end(self, net, **kwargs):
        if getattr(self, "total_", 0):
            net.history.record("valid_acc", self.correct_ / self.total_)


class StopTraining(KeyboardInterrupt):
    """Raised by a callback to end training normally.

    skorch ends its fit loop on ``KeyboardInterrupt``, which would also swallow a user's
    Ctrl-C; the classifiers end training quietly only on this subclass (or on skorch's
    own ``EarlyStopping`` when it has run out of patience) and let a real interrupt
    through.
    """


class _UserInterrupt(Exception):
    """Carries a user's KeyboardInterrupt past skorch's ``partial_fit``."""


class EarlyStoppingBest(Callback):
    """Stop when the monitored loss has not improved for ``patience`` epochs; restore best.

    Monitors ``valid_loss`` when an internal validation set exists, else
    ``train_loss``. An improvement is a relative decrease of more than
    ``threshold``. At the end of training the module weights of the best epoch are
    loaded back (the copy is then dropped so that it is not pickled).
    """

    def __init__(self, patience=5, threshold=1e-4):
        self.patience = patience
        self.threshold = threshold

    def initialize(self):
        self.best_score_ = math.inf
        self.best_epoch_ = 0
        self.wait_ = 0
        self.best_state_ = None
        self.monitor_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.monitor_ = "valid_loss" if "valid_loss" in row else "train_loss"
        score = row[self.monitor_]
        improved = (not math.isfinite(self.best_score_)
                    or score < self.best_score_ - self.threshold * abs(self.best_score_))
        if improved:
            self.best_score_ = score
            self.best_epoch_ = row["epoch"]
            self.wait_ = 0
            self.best_state_ = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
            net.history.record("best", True)
        else:
            self.wait_ += 1
            net.history.record("best", False)
            if self.wait_ >= self.patience:
                raise StopTraining  # ends the fit loop normally (skorch's convention)

    def on_train_end(self, net, **kwargs):
        if self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)
            net.best_epoch_ = self.best_epoch_
        self.best_state_ = None


class OneCycleSchedule(LRScheduler):
    """skorch's :class:`~skorch.callbacks.LRScheduler` with torch's ``OneCycleLR`` over
    the planned fit: the learning rate warms up from ``lr / 25`` to ``lr`` over the
    first ``warmup`` fraction of the optimizer steps, then anneals (cosine) to
    ``lr / 1e5``; Adam's beta1 cycles 0.95 -> 0.85 -> 0.95. The number of steps comes
    from the classifier's plan (``net.train_plan_``), so a fit that stops early ends
    the schedule early, and every ``fit`` or ``partial_fit`` call runs one cycle.
    """

    def __init__(self, warmup=0.3):
        super().__init__(policy=torch.optim.lr_scheduler.OneCycleLR, step_every="batch",
                         event_name=None)
        self.warmup = warmup

    @property
    def kwargs(self):
        return {"max_lr": self.max_lr_, "total_steps": self.total_steps_,
                "pct_start": self.warmup, "last_epoch": -1}

    def on_train_begin(self, net, **kwargs):
        self.max_lr_ = net.lr
        self.total_steps_ = max(1, int(net.train_plan_["steps"]))
        self.batch_idx_ = 0
        self.lr_scheduler_ = self._get_scheduler(net, self.policy_, **self.kwargs)

    def on_batch_end(self, net, training, **kwargs):
        if training and self.batch_idx_ + 1 >= self.total_steps_:
            self.batch_idx_ += 1  # the last planned step: OneCycleLR refuses one more
            return
        super().on_batch_end(net, training, **kwargs)


class EpochProgress(Callback):
    """One tqdm progress bar over epochs (to stderr) with the latest losses."""

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        plan = getattr(net, "train_plan_", None)
        total = plan["epochs"] if plan else net.max_epochs
        self.bar_ = tqdm(total=total, desc=type(net).__name__, unit="epoch",
                         leave=False, file=sys.stderr)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        post = {k: f"{row[k]:.3f}" for k in ("train_loss", "valid_loss", "valid_acc") if k in row}
        self.bar_.set_postfix(post)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
        self.bar_ = None


# -------------------------------------------------------------------- classifiers

def _is_plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    return False


class _UtteranceClassifier(NeuralNetClassifier):
    """Common machinery of the three classifiers (see the subclasses' docstrings)."""

    _module_cls = None
    _width_param = "n_bands"

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
        lr_schedule="onecycle",
        train_split="auto",
        valid_fraction=0.2,
        patience=None,
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
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            callbacks=callbacks,
            device=device,
            verbose=verbose,
            **kwargs,
        )
        self.max_steps = max_steps
        self.crop_frames = crop_frames
        self.lr_schedule = lr_schedule
        self.valid_fraction = valid_fraction
        self.patience = patience
        self.progress = progress
        self.random_state = random_state

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
            ("print_log", PrintLog()),
        ]
        if self.lr_schedule == "onecycle":  # checked in fit (_check_training_params)
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
        if not hasattr(self, "fitted_classes_"):
            raise NotFittedError(
                f"{type(self).__name__}: the module size depends on the data; call fit first"
            )
        kwargs = self.get_params_for("module")
        kwargs.setdefault("n_classes", len(self.fitted_classes_))
        kwargs.setdefault(self._width_param, int(self.n_features_in_))
        module = self._module_cls if self.module is None else self.module
        self.module_ = self.initialized_instance(module, kwargs).to(self.device)
        return self

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training and self.crop_frames is not None:
            kwargs["collate_fn"] = CropCollate(self.crop_frames,
                                               kwargs.get("collate_fn", collate_utterances))
        kwargs.setdefault("collate_fn", collate_utterances)
        if training:
            kwargs.setdefault("shuffle", True)
        return iterator(dataset, **kwargs)

    def get_split_datasets(self, X, y=None, **fit_params):
        planned = getattr(self, "_planned_split", None)
        if planned is not None:  # worked out once in fit (the step plan needs its size)
            return planned
        dataset = self.get_dataset(X, y)
        split = self.train_split
        if isinstance(split, str):
            if split != "auto":
                raise ValueError(f"train_split must be 'auto', None or a callable; got {split!r}")
            return _auto_split(dataset, self.valid_fraction, self.split_seed_)
        if not split:
            return dataset, None
        return split(dataset, y, **fit_params)

    # ---- validation helpers -------------------------------------------------
    def _check_X(self, X, reset):
        return _check_utterance_set(
            X, n_features=None if reset else self.n_features_in_,
            estimator_name=type(self).__name__,
        )

    def _check_fitted(self):
        check_is_fitted(self)

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
    def fit(self, X, y, groups=None, **fit_params):
        """Fit on an utterance set.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames, n_features)
            Utterance set (see the module docstring for accepted forms).
        y : array-like of shape (n_utterances,)
            Labels of any hashable, sortable type (e.g. device names).
        groups : array-like of shape (n_utterances,), optional
            Speaker of each utterance. With ``train_split="auto"`` the internal
            validation set then holds out whole speakers, so early stopping and the
            choice of the best epoch are judged on unseen speakers, as the test is.
            Inside a ``Pipeline`` or ``cross_validate`` it arrives through
            scikit-learn's metadata routing (``clf.set_fit_request(groups=True)``).
        **fit_params
            Passed on to skorch (``forward``/``train_split``).

        Returns
        -------
        self
        """
        self._check_training_params()
        Xs = self._check_X(X, reset=True)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(one label per utterance is needed)"
            )
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected.",
                          DataConversionWarning, stacklevel=2)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one label per utterance); got shape {y.shape}")
        if len(y) != len(Xs):
            raise ValueError(
                f"X has {len(Xs)} utterances but y has {len(y)} labels; they must match"
            )
        if groups is not None:
            groups = np.asarray(groups)
            if groups.ndim != 1 or len(groups) != len(Xs):
                raise ValueError(
                    f"groups must be 1-D with one speaker per utterance ({len(Xs)}); "
                    f"got shape {groups.shape}"
                )
        check_classification_targets(y)
        warm = self.warm_start and self.__sklearn_is_fitted__()
        if warm:
            classes = self.fitted_classes_
            if Xs[0].shape[1] != self.n_features_in_:
                self._check_X(Xs, reset=False)
        elif self.classes is not None:
            classes = np.asarray(self.classes)
        else:
            classes = np.unique(y)
        unseen = ~np.isin(y, classes)
        if unseen.any():
            raise ValueError(f"y contains labels not in classes: {np.unique(y[unseen])[:5]}")
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y; got 1 class "
                f"({classes[0]!r})"
            )
        if self.classes is None or warm:
            y_enc = np.searchsorted(classes, y)
        else:
            lookup = {v: i for i, v in enumerate(classes.tolist())}
            y_enc = np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
        self.fitted_classes_ = classes
        self.n_features_in_ = Xs[0].shape[1]
        seed = self._seed()
        self.split_seed_ = (
            seed % (2**32) if seed is not None else int(np.random.default_rng().integers(2**31))
        )
        items, y_items, utt = self._training_items(Xs, y_enc)
        dataset = UtteranceDataset(items, y_items, utt,
                                   speakers=None if groups is None else groups[utt])
        with torch.random.fork_rng(devices=self._rng_devices(), enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if not warm:
                self.initialize()
                compress = getattr(self.module_, "compress", None) or (lambda t: t)
                self.module_.norm.fit_chunks(
                    compress(torch.from_numpy(np.concatenate(items[i : i + 256], axis=0)))
                    for i in range(0, len(items), 256)
                )
            self._planned_split = self.get_split_datasets(dataset, dataset.y)
            try:
                self.train_plan_ = self._plan(*self._planned_split)
                NeuralNetClassifier.partial_fit(self, dataset, dataset.y,
                                                epochs=self.train_plan_["epochs"], **fit_params)
            except _UserInterrupt:
                raise KeyboardInterrupt from None  # a user's Ctrl-C aborts fit
            finally:
                del self._planned_split
        return self

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            if isinstance(exc, StopTraining) or self._callback_stopped():
                raise  # skorch ends training normally
            raise _UserInterrupt() from exc  # Ctrl-C: abort the fit, never "finish" it

    def _callback_stopped(self):
        """Whether a skorch ``EarlyStopping`` callback ended training (it raises a plain
        ``KeyboardInterrupt``)."""
        from skorch.callbacks import EarlyStopping

        return any(isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
                   for _, cb in getattr(self, "callbacks_", []))

    def _plan(self, train, valid):
        """The fit's plan: epochs, optimizer steps, and what the validation holds out.

        ``epochs = min(max_epochs, ceil(max_steps / steps_per_epoch))``: the step budget
        sets the length of training, so small corpora get enough optimizer steps and
        large ones do not take longer than the budget.
        """
        n_train = len(train)
        bs = n_train if self.batch_size == -1 else min(int(self.batch_size), max(n_train, 1))
        per_epoch = max(1, math.ceil(n_train / bs))
        epochs = int(self.max_epochs)
        if self.max_steps is not None:
            epochs = min(epochs, max(1, math.ceil(int(self.max_steps) / per_epoch)))
        held = None
        if valid is not None and isinstance(valid, Subset) and \
                getattr(valid.dataset, "speakers", None) is not None:
            held = sorted({str(v) for v in valid.dataset.speakers[np.asarray(valid.indices)]})
        return {"epochs": epochs, "steps_per_epoch": per_epoch, "steps": epochs * per_epoch,
                "n_train": n_train, "n_valid": 0 if valid is None else len(valid),
                "valid_speakers": held}

    def _check_training_params(self):
        def check(name, value, *, allow_none=False, low=1, kind=numbers.Integral):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, kind) or value < low:
                what = "an int" if kind is numbers.Integral else "a number"
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be {what} >= {low}"
                    f"{' or None' if allow_none else ''}; got {value!r}"
                )

        check("max_epochs", self.max_epochs)
        check("max_steps", self.max_steps, allow_none=True)
        check("crop_frames", self.crop_frames, allow_none=True)
        check("patience", self.patience, allow_none=True)
        if not (isinstance(self.batch_size, numbers.Integral) and
                (self.batch_size >= 1 or self.batch_size == -1)):
            raise ValueError(f"The 'batch_size' parameter of {type(self).__name__} must be an "
                             f"int >= 1 or -1; got {self.batch_size!r}")
        if self.lr_schedule not in ("onecycle", None):
            raise ValueError(f"The 'lr_schedule' parameter of {type(self).__name__} must be "
                             f"'onecycle' or None; got {self.lr_schedule!r}")
        check("lr", self.lr, low=0, kind=numbers.Real)

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
    def _batches_for_inference(self, lengths):
        order = np.argsort(lengths, kind="stable")
        bs = max(1, int(self.batch_size if self.batch_size != -1 else len(lengths)))
        budget = bs * 512  # cap on padded frames per batch (memory)
        start = 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and stop - start < bs and \
                    (stop - start + 1) * lengths[order[stop]] <= budget:
                stop += 1
            yield order[start:stop]
            start = stop

    def _run(self, X, fn):
        """Apply ``fn(module, x, lengths)`` batch-wise; return per-utterance CPU outputs."""
        check_is_fitted(self)
        Xs = self._check_X(X, reset=False)
        lengths = np.array([len(a) for a in Xs])
        out = [None] * len(Xs)
        module = self.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                for idx in self._batches_for_inference(lengths):
                    batch, _ = collate_utterances([(Xs[i], 0) for i in idx])
                    x = batch["x"].to(self.device)
                    L = batch["lengths"].to(self.device)
                    res = fn(module, x, L)
                    for j, i in enumerate(idx):
                        out[i] = {k: v[j] for k, v in res.items()}
        finally:
            module.train(was_training)
        return out, lengths

    def _logits(self, X):
        """Logits ``(n_utterances, n_classes)`` (mean segment log-probs for DFT-CNN)."""
        out, _ = self._run(X, lambda m, x, L: {"z": m(x, L).double().cpu()})
        return torch.stack([o["z"] for o in out]).numpy()

    def predict_proba(self, X):
        """Class probabilities ``(n_utterances, n_classes)``, columns in ``classes_`` order."""
        z = torch.from_numpy(self._logits(X))
        return torch.softmax(z, dim=1).numpy()

    def predict(self, X):
        """Predicted labels ``(n_utterances,)`` (values from ``classes_``)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def predict_log_proba(self, X):
        """Log class probabilities ``(n_utterances, n_classes)``."""
        z = torch.from_numpy(self._logits(X))
        return torch.log_softmax(z, dim=1).numpy()

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; labels not seen in ``fit`` raise ValueError."""
        check_is_fitted(self)
        y = np.asarray(y)
        if y.ndim != 1:
            y = y.ravel()
        unseen = ~np.isin(y, self.classes_)
        if unseen.any():
            raise ValueError(
                f"y contains labels not seen in fit: {list(np.unique(y[unseen])[:5])}; "
                f"known classes are {list(self.classes_)}"
            )
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    def transform(self, X):
        """Pooled utterance embeddings ``(n_utterances, embedding_dim)`` float32.

        What the classification network reads: SA-CNN ``K`` of eq. 1 (20 x 12 = 240
        values; 20 with ``module__band_pooling="mean"``); DA-CNN ``K'`` of eq. 2 in its
        band-preserving reading (40 x 24 = 960 values; 40 with
        ``module__band_pooling="sum"``); DFT-CNN the mean over segments of the 128-d
        hidden layer.
        """
        out, _ = self._run(X, lambda m, x, L: {"e": m.embed(x, L).float().cpu()})
        return torch.stack([o["e"] for o in out]).numpy().astype(np.float32)

    def fit_transform(self, X, y, **fit_params):
        """``fit(X, y)`` then ``transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)

    # ---- persistence ----------------------------------------------------------
    def save(self, path):
        """Save weights, parameters and ``classes_`` without pickled code.

        The file is written with :func:`torch.save` and holds only tensors, strings,
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
        params = {k: v for k, v in self.get_params(deep=False).items() if _is_plain(v)}
        for name in ("band_pooling", "batch_norm"):  # the readings the weights belong to
            if hasattr(self.module_, name):
                params[f"module__{name}"] = getattr(self.module_, name)
        classes = self.classes_
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": params,
            "classes": classes.tolist(),
            "classes_dtype": classes.dtype.str if classes.dtype != object else "object",
            "n_features_in": int(self.n_features_in_),
            "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path, device="cpu", **overrides):
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
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path!s} is not a devicepool estimator file")
        if payload.get("format_version", 0) > _FORMAT_VERSION:
            raise ValueError(f"{path!s} was written by a newer devicepool (format "
                             f"{payload['format_version']})")
        if payload["estimator"] != cls.__name__:
            raise ValueError(
                f"{path!s} holds a {payload['estimator']}, not a {cls.__name__}"
            )
        params = dict(payload["params"])
        if payload.get("format_version", 1) < 2 and cls._module_cls is not None \
                and cls._module_cls.__name__ in ("SACNN", "DACNN"):
            # written before the readings were parameters: the paper's readings
            params.setdefault("module__band_pooling", "sum" if cls._module_cls.__name__ == "DACNN"
                              else "mean")
            params.setdefault("module__batch_norm", False)
        params["device"] = device
        params.update(overrides)
        est = cls(**params)
        dt = payload["classes_dtype"]
        est.fitted_classes_ = np.asarray(payload["classes"], dtype=object if dt == "object" else dt)
        est.n_features_in_ = int(payload["n_features_in"])
        est.initialize()
        est.module_.load_state_dict(payload["state_dict"])
        est.module_.to(device)
        return est


class _AttentionMixin:
    def _attention(self, X):
        out, lengths = self._run(
            X, lambda m, x, L: {k: v.float().cpu() for k, v in m.attention(x, L).items()}
        )
        red = self.module_.time_reduction
        time = [o["time"][: math.ceil(n / red)].numpy() for o, n in zip(out, lengths)]
        band = (np.stack([o["band"].numpy() for o in out]) if "band" in out[0] else None)
        return time, band


_COMMON_PARAMS = """
    Parameters
    ----------
    module : torch.nn.Module class or None, default=None
        None means :class:`~devicepool.models.{module}`.
        The network; ``n_classes`` and ``{width}`` are set from the data.
        ``module__<name>`` sets its other constructor arguments.
    criterion : default=torch.nn.CrossEntropyLoss
    optimizer : default=torch.optim.Adam
    lr : float, default=3e-3
        Peak learning rate of the one-cycle schedule (the constant rate without one).
    max_epochs : int, default=200
        Upper bound on epochs (the step budget usually ends training first).
    max_steps : int or None, default=400
        Optimizer-step budget: ``min(max_epochs, ceil(max_steps / batches per epoch))``
        epochs are run. None: ``max_epochs`` epochs.
    batch_size : int, default=32
        Items per mini-batch (utterances; segments for DFT-CNN training).
    crop_frames : int or None, default=100
        Train on random windows of this many frames, drawn afresh every epoch
        (shorter items are used whole). None: whole utterances. DFT-CNN trains on
        single segments, which crops never cut.
    lr_schedule : {{"onecycle", None}}, default="onecycle"
        One-cycle schedule over the planned steps (30 % warm-up), or a constant ``lr``.
    train_split : "auto", None or callable, default="auto"
        "auto": hold out whole speakers when ``fit`` gets ``groups``, else a stratified
        ``valid_fraction`` of the utterances; no validation when the data are too small
        (see the module docstring). None: no validation. A callable (e.g.
        ``skorch.dataset.ValidSplit``) is used as in skorch.
    valid_fraction : float, default=0.2
    patience : int or None, default=None
        Early stopping patience in epochs (monitors ``valid_loss``, or ``train_loss``
        without validation); the best epoch's weights are restored. None trains the
        whole budget.
    progress : bool, default=False
        Show a tqdm bar over epochs on stderr.
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
    train_plan_ : dict
        The last fit's plan: ``epochs``, ``steps_per_epoch``, ``steps``, ``n_train``,
        ``n_valid`` (items) and ``valid_speakers`` (held-out speakers, or None).
    module_ : torch.nn.Module
    history_ : skorch History
"""


class SACNNClassifier(_AttentionMixin, _UtteranceClassifier):
    __doc__ = (
        """Single attention pooling CNN (SA-CNN) as a scikit-learn classifier.

    Takes an utterance set of log filter-bank frames ``(n_frames, 24)`` (e.g. the
    output of :class:`~devicepool.features.FilterBank`) of any length >= 1 frame and
    predicts the recording device. See :class:`devicepool.models.SACNN`.
"""
        + _COMMON_PARAMS.format(module="SACNN", width="n_bands")
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
    _width_param = "n_bands"

    def attention_weights(self, X):
        """Time attention weights per utterance (the data of the paper's Fig. 2).

        Returns
        -------
        list of ndarray
            One float32 array of shape ``(ceil(n_frames / 4),)`` per utterance
            (valid output frames only), summing to 1.
        """
        return self._attention(X)[0]


class DACNNClassifier(_AttentionMixin, _UtteranceClassifier):
    __doc__ = (
        """Dual attention pooling CNN (DA-CNN) as a scikit-learn classifier.

    Takes an utterance set of log filter-bank frames ``(n_frames, 24)`` of any
    length >= 1 frame and predicts the recording device.
    See :class:`devicepool.models.DACNN`.
"""
        + _COMMON_PARAMS.format(module="DACNN", width="n_bands")
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
    _width_param = "n_bands"

    def attention_weights(self, X):
        """Time and band attention weights (the data of the paper's Fig. 2).

        Returns
        -------
        Bunch
            ``time``: list of float32 arrays ``(ceil(n_frames / 4),)``, one per
            utterance, each summing to 1; ``band``: float32 ndarray
            ``(n_utterances, n_bands)``, rows summing to 1.
        """
        time, band = self._attention(X)
        return Bunch(time=time, band=band)


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
        + _COMMON_PARAMS.format(module="DFTCNN", width="n_bins")
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
    _width_param = "n_bins"

    def _training_items(self, Xs, y_enc):
        counts = np.array([len(a) for a in Xs])
        segments = [seg[None, :] for a in Xs for seg in a]
        return segments, np.repeat(y_enc, counts), np.repeat(np.arange(len(Xs)), counts)
