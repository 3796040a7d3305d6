"""The module contract: what a network must offer to be wrapped by a devicepool classifier.

The classifiers of :mod:`devicepool.estimators` train and query any ``torch.nn.Module``
that keeps this contract, the three networks of the paper included
(``SACNNClassifier(module=MyNet)`` works when ``MyNet`` keeps it):

==========================  ==================================================================
constructor                 ``Module(n_classes=..., n_features=..., **module_params)``: the
                            number of classes and the **input width** (features per frame)
                            under these two names; ``module__<name>`` sets the others
attributes                  ``n_classes`` and ``n_features`` (ints, as constructed)
``forward(x, lengths)``     ``x`` ``(B, T, n_features)`` zero-padded float, ``lengths``
                            ``(B,)`` int64 -> logits ``(B, n_classes)``; padding must not
                            change a valid utterance's output
``embed(x, lengths)``       -> the pooled utterance embedding ``(B, embedding_dim)``
                            (what ``transform`` returns)
``fit_input_statistics``    optional: ``fit_input_statistics(chunks)`` gets an iterable of
                            raw training frames ``(n_i, n_features)``, one block per training
                            item (utterance), once per ``fit``, before training (input
                            standardisation)
``attention(x, lengths)``   optional: -> :class:`BatchAttention` (time weights ``(B, T')``
                            with ``T' = ceil(T / time_reduction)``, band weights ``(B, n_bands)``
                            or None), or a mapping with ``"time"`` (and ``"band"``)
``outputs(x, lengths)``     optional: -> :class:`ModuleOutputs`, logits, embedding and
                            attention from **one** forward pass (else :func:`module_outputs`
                            runs ``forward``, ``embed`` and ``attention`` one after the other)
==========================  ==================================================================

:func:`check_module` verifies the required part when a classifier initialises its
module, so a network that breaks it fails at once with a message naming what is
missing, not deep inside training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from ..features import AttentionWeights

__all__ = ["AttentionWeights", "BatchAttention", "ModuleOutputs", "check_module", "module_outputs"]


class BatchAttention(Mapping):
    """Attention weights of one padded batch, as a module's ``attention`` returns them.

    Parameters
    ----------
    time : tensor ``(B, T')``
        Time weights, summing to one over each utterance's valid output frames (0 at
        padding).
    band : tensor ``(B, n_bands)`` or None
        Band weights (DA-CNN), rows summing to one; None for time-only attention.
    time_reduction : int
        Input frames per time weight (4 for SA-/DA-CNN): weight ``j`` covers frames
        ``[j * time_reduction, (j + 1) * time_reduction)``.

    It reads also as a mapping with keys ``"time"`` and (when present) ``"band"``, the
    form a module may return instead. :class:`AttentionWeights` is the per-utterance
    (numpy) form the classifiers give.
    """

    __slots__ = ("time", "band", "time_reduction")

    def __init__(self, time, band=None, time_reduction=1):
        self.time = time
        self.band = band
        self.time_reduction = int(time_reduction)

    def __getitem__(self, key):
        if key == "time":
            return self.time
        if key == "band" and self.band is not None:
            return self.band
        raise KeyError(key)

    def __iter__(self):
        return iter(("time",) if self.band is None else ("time", "band"))

    def __len__(self):
        return 1 if self.band is None else 2


class ModuleOutputs(NamedTuple):
    """Everything one forward pass gives: ``logits`` ``(B, n_classes)``, ``embedding``
    ``(B, embedding_dim)`` and ``attention`` (:class:`BatchAttention` or None)."""

    logits: torch.Tensor
    embedding: torch.Tensor
    attention: BatchAttention | None = None


def check_module(module: nn.Module, *, n_classes: int | None = None,
                 n_features: int | None = None) -> nn.Module:
    """Check that ``module`` keeps the module contract (see the module docstring).

    Raises
    ------
    TypeError
        When it is not an ``nn.Module`` or lacks ``forward``, ``embed``, ``n_classes`` or
        ``n_features``.
    ValueError
        When ``n_classes`` / ``n_features`` differ from what the data need.
    """
    name = type(module).__name__
    if not isinstance(module, nn.Module):
        raise TypeError(f"the module must be a torch.nn.Module, got {name}")
    missing = [a for a in ("n_classes", "n_features") if not isinstance(getattr(module, a, None), int)]
    missing += [m for m in ("embed",) if not callable(getattr(module, m, None))]
    if missing:
        raise TypeError(
            f"{name} does not keep devicepool's module contract: it lacks "
            f"{', '.join(missing)} (see devicepool.models._contract: a module takes "
            "n_classes and n_features, exposes them as int attributes, and defines "
            "forward(x, lengths) and embed(x, lengths))"
        )
    for attr, want in (("n_classes", n_classes), ("n_features", n_features)):
        if want is not None and getattr(module, attr) != int(want):
            raise ValueError(f"{name}.{attr} is {getattr(module, attr)} but the data need {want}")
    return module


def module_outputs(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                   attention: bool = True) -> ModuleOutputs:
    """Logits, embedding and (if the module has it and ``attention``) attention of a batch.

    Uses the module's single-pass ``outputs`` when it has one; otherwise calls
    ``forward``, ``embed`` and ``attention`` in turn.
    """
    outputs = getattr(module, "outputs", None)
    if callable(outputs):
        out = outputs(x, lengths)
        return out if attention else out._replace(attention=None)
    att = None
    if attention and callable(getattr(module, "attention", None)):
        att = module.attention(x, lengths)
        if isinstance(att, Mapping) and not isinstance(att, BatchAttention):
            att = BatchAttention(att["time"], att.get("band"),
                                   getattr(module, "time_reduction", 1))
    return ModuleOutputs(module(x, lengths), module.embed(x, lengths), att)
