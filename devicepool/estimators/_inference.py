"""Inference over an utterance set: memory-bounded batches, one forward pass each,
per-utterance outputs (logits, embedding and attention together)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..models import AttentionWeights, module_outputs
from ._data import collate_utterances, inference_batches

__all__ = ["UtteranceOutputs", "run_network"]


class UtteranceOutputs(NamedTuple):
    """What one forward pass over an utterance set gives (:meth:`predict_outputs`).

    Attributes
    ----------
    logits : ndarray of shape (n_utterances, n_classes), float64
        ``classes_[logits.argmax(1)]`` is ``predict(X)``; ``softmax(logits)`` is
        ``predict_proba(X)``.
    embedding : ndarray of shape (n_utterances, embedding_dim), float32
        What ``transform(X)`` returns.
    attention : AttentionWeights or None
        ``time``: list of float32 arrays ``(ceil(n_frames / time_reduction),)``, one per
        utterance, each summing to 1; ``band``: float32 ndarray ``(n_utterances,
        n_bands)`` or None; ``time_reduction`` (no ``utterance_index`` or ``voicing``).
        None for networks without attention.
    """

    logits: np.ndarray
    embedding: np.ndarray
    attention: AttentionWeights | None


def _unbatch_attention(att, idx, lengths, rows):
    """Put a batch's attention into ``rows`` (valid output frames only); return the
    time reduction."""
    r = att.time_reduction
    t = att.time.float().cpu()
    b = None if att.band is None else att.band.float().cpu()
    for j, i in enumerate(idx):
        rows[i] = (t[j, :math.ceil(lengths[i] / r)].numpy(), None if b is None else b[j].numpy())
    return r


def run_network(module, Xs, *, batch_size, device="cpu", attention=True, max_frames=None):
    """Run ``module`` (module contract) over checked feature arrays ``Xs`` in eval mode.

    Batches come from :func:`~devicepool.estimators._data.inference_batches` (sorted by
    length, at most ``max_frames`` padded frames (default ``batch_size * 512``), an
    utterance longer than that alone); each batch is one forward pass giving logits,
    embedding and (with ``attention``, when the module has it) attention weights.

    Returns
    -------
    UtteranceOutputs
    """
    lengths = np.array([len(a) for a in Xs])
    logits, emb, att = [None] * len(Xs), [None] * len(Xs), [None] * len(Xs)
    was_training = module.training
    module.eval()
    reduction = 1
    try:
        with torch.no_grad():
            for idx in inference_batches(lengths, batch_size, max_frames):
                batch, _ = collate_utterances([(Xs[i], 0) for i in idx])
                out = module_outputs(module, batch["x"].to(device),
                                     batch["lengths"].to(device), attention=attention)
                z, e = out.logits.double().cpu(), out.embedding.float().cpu()
                for j, i in enumerate(idx):
                    logits[i], emb[i] = z[j], e[j]
                if out.attention is not None:
                    reduction = _unbatch_attention(out.attention, idx, lengths, att)
    finally:
        module.train(was_training)
    weights = None
    if att[0] is not None:
        band = None if att[0][1] is None else np.stack([a[1] for a in att])
        weights = AttentionWeights([a[0] for a in att], band, reduction)
    return UtteranceOutputs(torch.stack(logits).numpy(),
                            torch.stack(emb).numpy().astype(np.float32), weights)
