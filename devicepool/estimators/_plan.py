"""A fit's two budgets: optimizer steps (how long it trains) and padded frames per
batch (how much memory a batch takes)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from torch.utils.data import Subset

__all__ = ["TrainingPlan", "training_plan", "length_cap", "warn_budget_crops"]


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """A fit's plan: what :func:`training_plan` returns, read by the callbacks.

    ``plan["epochs"]``, ``dict(plan)`` and ``plan.keys()`` read it like the dict it was.

    Attributes
    ----------
    epochs, steps_per_epoch, steps : int
        Epochs, optimizer steps per epoch, and both multiplied.
    n_train, n_valid : int
        Items trained on and held out for validation.
    valid_speakers : list of str or None
        The held-out speakers (None without speakers or validation).
    """

    epochs: int
    steps_per_epoch: int
    steps: int
    n_train: int
    n_valid: int
    valid_speakers: list | None

    def as_dict(self):
        """The plan as a plain dict (what a record's ``train_plan`` holds)."""
        return dataclasses.asdict(self)

    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)


def training_plan(train, valid, *, batch_size, max_epochs, max_steps, n_batches=None):
    """The fit's plan: epochs, optimizer steps, and what the validation holds out.

    ``epochs = min(max_epochs, ceil(max_steps / steps_per_epoch))``: the step budget sets
    the length of training, so small corpora get enough optimizer steps and large ones
    do not take longer than the budget. ``n_batches``, when known, is the iterator's
    batches per epoch (more than ``ceil(n / batch_size)`` when the frame budget cuts).

    Returns
    -------
    TrainingPlan
    """
    n_train = len(train)
    bs = n_train if batch_size == -1 else min(int(batch_size), max(n_train, 1))
    per_epoch = max(1, math.ceil(n_train / bs), int(n_batches or 0))
    epochs = int(max_epochs)
    if max_steps is not None:
        epochs = min(epochs, max(1, math.ceil(int(max_steps) / per_epoch)))
    held = None
    if valid is not None and isinstance(valid, Subset) and \
            getattr(valid.dataset, "speakers", None) is not None:
        held = sorted({str(v) for v in valid.dataset.speakers[np.asarray(valid.indices)]})
    return TrainingPlan(epochs=epochs, steps_per_epoch=per_epoch, steps=epochs * per_epoch, n_train=n_train,
                        n_valid=0 if valid is None else len(valid), valid_speakers=held)


def length_cap(crop_frames, max_batch_frames, lengths):
    """Frames a training item is cut to (a random window), or None: ``crop_frames``, or
    ``max_batch_frames`` when an item is longer than that budget."""
    cap, budget = crop_frames, max_batch_frames
    if budget is not None and len(lengths) and int(np.max(lengths)) > budget and \
            (cap is None or cap > budget):
        cap = budget
    return cap


def warn_budget_crops(lengths, crop_frames, max_batch_frames):
    """Warn when the frame budget, not ``crop_frames``, cuts training items."""
    cap = length_cap(crop_frames, max_batch_frames, lengths)
    if cap is not None and cap != crop_frames:
        n_long = int(np.sum(np.asarray(lengths) > cap))
        warnings.warn(
            f"{n_long} training item(s) are longer than max_batch_frames={cap} frames; "
            f"each epoch trains on a random window of {cap} frames of them, to bound "
            "the memory of a batch (set crop_frames, or raise max_batch_frames)",
            UserWarning, stacklevel=5)
