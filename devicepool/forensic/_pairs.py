"""Calibration and evaluation pairs: a questioned utterance against a device's references.

A pair is ``(questioned utterance, references)``; the references are ``n_references``
(or, where fewer exist, all available) utterances of ONE device, all by speakers other
than the questioned utterance's speaker. Same-device pairs (H1) take the references
from the questioned utterance's own device, different-device pairs (H2) from another
device. How many pairs:

* the *universe* of a kind is the set of ``(questioned, single reference)``
  combinations: its size caps the number of pairs of that kind;
* ``min(max_pairs, universe)`` pairs of each kind are drawn, spread as evenly as
  possible over the questioned utterances (water-filling); each questioned utterance
  takes distinct first references ("anchors"), so with ``n_references=1`` and a small
  universe every combination is used exactly once;
* the other ``n_references - 1`` references follow the anchor in a random order of its
  device's eligible utterances (cyclically), so a reference set never repeats an
  utterance.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

__all__ = ["Pairs", "make_pairs", "reference_means"]


class Pairs(NamedTuple):
    """Pairs in compressed form: pair ``i`` has references ``ref_index[ref_ptr[i]:ref_ptr[i + 1]]``."""

    questioned: np.ndarray  #: index of the questioned utterance, shape (p,)
    ref_index: np.ndarray  #: indices of the references, concatenated, shape (r,)
    ref_ptr: np.ndarray  #: offsets into ref_index, shape (p + 1,)
    y: np.ndarray  #: 1 = same device (H1), 0 = different devices (H2), shape (p,)


def _allocate(total, caps, rng):
    """Spread ``total`` pairs over utterances as evenly as their caps allow -> (n,) ints."""
    k = np.zeros_like(caps)
    remaining = int(total)
    while remaining > 0:
        active = np.flatnonzero(k < caps)
        share = remaining // len(active)
        if share == 0:
            k[rng.choice(active, remaining, replace=False)] += 1
            break
        add = np.minimum(share, caps[active] - k[active])
        k[active] += add
        remaining -= int(add.sum())
    return k


def _cell_candidates(dev, spk, order, d, s, same):
    """Eligible references of a questioned utterance of device ``d``, speaker ``s``,
    grouped by device (``order`` sorts utterances by device)."""
    mask = (dev[order] == d) if same else (dev[order] != d)
    mask &= spk[order] != s
    return order[mask]


def _shuffle_blocks(cand, dev, rng):
    """Shuffle ``cand`` within its device blocks; return it, block starts and sizes."""
    cand = cand[np.lexsort((rng.random(len(cand)), dev[cand]))]
    block_dev = dev[cand]
    start = np.searchsorted(block_dev, block_dev, side="left")
    size = np.searchsorted(block_dev, block_dev, side="right") - start
    return cand, start, size


def _cell_pairs(members, k, cand, dev, n_references, rng):
    """Pairs of the questioned ``members`` (k[i] each) against candidates ``cand``."""
    cand, start, size = _shuffle_blocks(cand, dev, rng)
    anchors = np.concatenate([rng.choice(len(cand), int(c), replace=False) for c in k])
    questioned = np.repeat(members, k)
    n_refs = np.minimum(n_references, size[anchors])
    offset = np.arange(n_refs.sum()) - np.repeat(np.cumsum(n_refs) - n_refs, n_refs)
    b0, rel = np.repeat(start[anchors], n_refs), np.repeat(anchors - start[anchors], n_refs)
    refs = cand[b0 + (rel + offset) % np.repeat(size[anchors], n_refs)]
    return questioned, refs, n_refs


def _pairs_of_kind(dev, spk, same, n_references, max_pairs, rng):
    """Questioned indices, concatenated references and counts of one kind of pair."""
    order = np.argsort(dev, kind="stable")
    cells, cell_of = np.unique(np.stack([dev, spk], axis=1), axis=0, return_inverse=True)
    cell_of = cell_of.ravel()
    cands = [_cell_candidates(dev, spk, order, d, s, same) for d, s in cells]
    caps = np.array([len(c) for c in cands])[cell_of]
    k = _allocate(min(max_pairs, int(caps.sum())), caps, rng)
    parts = []
    for c, cand in enumerate(cands):
        members = np.flatnonzero((cell_of == c) & (k > 0))
        if len(members):
            parts.append(_cell_pairs(members, k[members], cand, dev, n_references, rng))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return tuple(np.concatenate(p) for p in zip(*parts))


def make_pairs(devices, speakers, *, n_references, max_pairs, rng):
    """Same-device and different-device pairs with references by other speakers.

    Parameters
    ----------
    devices, speakers : ndarray of shape (n,)
        Device and speaker of each utterance.
    n_references : int
        References per pair (fewer where a device has fewer eligible utterances).
    max_pairs : int
        At most this many pairs of each kind.
    rng : numpy.random.Generator

    Returns
    -------
    Pairs
        Same-device pairs first.
    """
    dev = np.unique(devices, return_inverse=True)[1].ravel()
    spk = np.unique(speakers, return_inverse=True)[1].ravel()
    q1, r1, n1 = _pairs_of_kind(dev, spk, True, n_references, max_pairs, rng)
    q0, r0, n0 = _pairs_of_kind(dev, spk, False, n_references, max_pairs, rng)
    counts = np.concatenate([n1, n0])
    return Pairs(
        np.concatenate([q1, q0]).astype(np.int64),
        np.concatenate([r1, r0]).astype(np.int64),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.r_[np.ones(len(q1), np.int64), np.zeros(len(q0), np.int64)],
    )


def reference_means(Z, pairs, start, stop):
    """Mean of each pair's reference vectors, for pairs ``start:stop``.

    Parameters
    ----------
    Z : ndarray of shape (n, dim)
        Preprocessed vectors of all utterances.
    pairs : Pairs
    start, stop : int

    Returns
    -------
    means : ndarray of shape (stop - start, dim)
    counts : ndarray of shape (stop - start,)
    """
    ptr = pairs.ref_ptr[start:stop + 1]
    counts = np.diff(ptr)
    cols = pairs.ref_index[ptr[0]:ptr[-1]]
    M = csr_matrix((np.repeat(1.0 / counts, counts), cols, ptr - ptr[0]),
                   shape=(len(counts), len(Z)))
    return np.asarray(M @ Z), counts
