"""skorch callbacks of the classifiers: validation accuracy, early stopping that restores
the best epoch, the one-cycle schedule over the planned steps, a progress bar.

Ending training: skorch ends its fit loop on ``KeyboardInterrupt``, which would also
swallow a user's Ctrl-C. Callbacks here end training with :class:`StopTraining` (a
subclass), and the classifiers end quietly only on it or on skorch's own
``EarlyStopping`` having run out of patience; a real interrupt aborts ``fit``.
"""

from __future__ import annotations

import re
import sys

import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, PrintLog

__all__ = ["ValidAccuracy", "StopTraining", "EarlyStoppingBest", "OneCycleSchedule",
           "EpochProgress", "PlainPrintLog"]


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
    """Raised by a callback to end training normally (see the module docstring)."""


class UserInterrupt(Exception):
    """Carries a user's KeyboardInterrupt past skorch's ``partial_fit``."""


class EarlyStoppingBest(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping` with ``load_best=True`` that
    monitors ``valid_loss`` when the fit has a validation set and ``train_loss`` when it
    has none, records ``best`` in the history, sets ``net.best_epoch_`` and drops its
    copy of the weights after training (so it is never pickled).

    Parameters
    ----------
    patience : int, default=5
    threshold : float, default=1e-4
        Relative improvement that counts.
    """

    def __init__(self, patience=5, threshold=1e-4, monitor="valid_loss", sink=print):
        super().__init__(monitor=monitor, patience=patience, threshold=threshold,
                         threshold_mode="rel", lower_is_better=True, sink=sink, load_best=True)

    def on_train_begin(self, net, **kwargs):
        plan = getattr(net, "train_plan_", None)
        self.monitor = "train_loss" if plan is not None and not plan.n_valid else "valid_loss"
        super().on_train_begin(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt:
            raise StopTraining from None
        finally:
            net.history.record("best", self.best_epoch_ == net.history[-1, "epoch"])

    def on_train_end(self, net, **kwargs):
        super().on_train_end(net, **kwargs)
        if self.best_epoch_:
            net.best_epoch_ = self.best_epoch_
        self.best_model_weights_ = None


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
        self.total_steps_ = max(1, int(net.train_plan_.steps))
        self.batch_idx_ = 0
        self.lr_scheduler_ = self._get_scheduler(net, self.policy_, **self.kwargs)

    def on_batch_end(self, net, training, **kwargs):
        if training and self.batch_idx_ + 1 >= self.total_steps_:
            self.batch_idx_ += 1  # the last planned step: OneCycleLR refuses one more
            return
        super().on_batch_end(net, training, **kwargs)


class EpochProgress(Callback):
    """Progress over the planned epochs on stderr: a tqdm bar with the latest losses where a
    bar can be read (a terminal or a notebook, :func:`devicepool._progress.show_bars`), left
    on screen when training ends; elsewhere (a log file, a pipe) plain lines, about ten per
    fit plus the last epoch, e.g. ``DACNNClassifier: epoch 8/40, train_loss 0.532``."""

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        from .._progress import show_bars

        plan = getattr(net, "train_plan_", None)
        self.total_ = net.max_epochs if plan is None else plan.epochs
        self.every_ = max(1, -(-self.total_ // 10))
        self.bar_ = None
        if show_bars(True):
            # left on screen only when training ends (on_train_end); an interrupted one clears
            self.bar_ = tqdm(total=self.total_, desc=type(net).__name__, unit="epoch", leave=False,
                             file=sys.stderr)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        post = {k: f"{row[k]:.3f}" for k in ("train_loss", "valid_loss", "valid_acc") if k in row}
        if self.bar_ is not None:
            self.bar_.set_postfix(post)
            self.bar_.update(1)
        elif row["epoch"] % self.every_ == 0 or row["epoch"] >= self.total_:
            # the progress display asked for (progress=True), where tqdm would draw its bar
            scores = ", ".join(f"{k} {v}" for k, v in post.items())
            sys.stderr.write(f"{type(net).__name__}: epoch {row['epoch']}/{self.total_}, {scores}\n")
            sys.stderr.flush()

    def on_train_end(self, net, **kwargs):
        if getattr(self, "bar_", None) is not None:
            self.bar_.leave = True
            self.bar_.close()
        self.bar_ = None

    def abandon(self):
        """Clear the bar of an interrupted fit (skorch calls no ``on_train_end`` then)."""
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
        self.bar_ = None


class PlainPrintLog(PrintLog):
    """skorch's epoch table (``verbose=1``), with its colour codes for the best scores only
    when printed to a terminal: a log file, or any other ``sink``, gets plain text."""

    def format_row(self, row, key, color):
        from .._progress import show_bars

        text = super().format_row(row, key, color)
        if isinstance(text, str) and not (self.sink is print and show_bars(True, sys.stdout)):
            return re.sub(r"\x1b\[[0-9;]*m", "", text)
        return text
