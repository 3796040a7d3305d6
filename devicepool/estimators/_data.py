"""Data plumbing of the classifiers: datasets, padding collate, crops, length-bucketed
batches, the internal validation split and memory-bounded inference batches.

Every batch is ``({"x": (B, T, F) float32 zero-padded, "lengths": (B,) int64}, y)``;
the networks mask the padding (``devicepool.models``). A dataset with sample weights
adds ``"sample_weight": (B,) float32`` to the dict (the classifiers take it out before
the forward pass and weight the loss with it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.model_selection import StratifiedShuffleSplit
from torch.utils.data import Dataset, Subset

__all__ = ["held_out_speakers", "UtteranceDataset", "collate_utterances", "CropCollate", "BucketIterator",
           "inference_batches"]


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
    weights : ndarray of float, optional
        Weight of each item in the loss; items are then ``(array, label, weight)``.
    """

    def __init__(self, X, y=None, groups=None, speakers=None, weights=None):
        self.X = X
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        self.speakers = None if speakers is None else np.asarray(speakers)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        self.lengths = np.fromiter((len(a) for a in X), dtype=np.int64, count=len(X))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        label = -1 if self.y is None else int(self.y[i])
        if self.weights is None:
            return self.X[i], label
        return self.X[i], label, float(self.weights[i])


def _dataset_lengths(ds):
    if isinstance(ds, Subset):
        return _dataset_lengths(ds.dataset)[np.asarray(ds.indices)]
    if hasattr(ds, "lengths"):
        return np.asarray(ds.lengths)
    return np.array([len(ds[i][0]) for i in range(len(ds))])


def collate_utterances(items):
    """Pad a list of ``(array, label)`` pairs (or ``(array, label, weight)`` triples) into
    ``({"x", "lengths"[, "sample_weight"]}, y)`` tensors."""
    lengths = np.fromiter((len(it[0]) for it in items), dtype=np.int64, count=len(items))
    T = int(lengths.max())
    F = items[0][0].shape[1]
    x = np.zeros((len(items), T, F), dtype=np.float32)
    for b, it in enumerate(items):
        x[b, : len(it[0])] = it[0]
    y = torch.as_tensor(np.fromiter((it[1] for it in items), dtype=np.int64, count=len(items)))
    batch = {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lengths)}
    if len(items[0]) > 2:
        batch["sample_weight"] = torch.tensor([it[2] for it in items], dtype=torch.float32)
    return batch, y


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
        lengths = [len(it[0]) for it in items]
        starts = torch.randint(0, 2**62, (len(items),)).tolist()
        out = []
        for (a, *rest), n, r in zip(items, lengths, starts):
            if n > c:
                s0 = r % (n - c + 1)
                a = a[s0:s0 + c]
            out.append((a, *rest))
        return self.collate_fn(out)


class BucketIterator:
    """Length-bucketed mini-batches (the default ``iterator_train``/``iterator_valid``).

    With ``shuffle=True`` the items are shuffled, cut into pools of
    ``batch_size * pool_batches`` items, each pool is sorted by length and cut into
    batches, and the batch order is shuffled; so batches hold similar lengths (little
    padding) while the epoch stays random. With ``shuffle=False`` items are sorted by
    length. Randomness comes from torch's global generator (the classifiers seed it
    inside a forked RNG state when ``random_state`` is set).

    With ``max_frames``, a batch whose padded size (items x longest item, each item
    counted at most ``length_cap`` frames, the crop the collate function applies) would
    exceed ``max_frames`` is cut into smaller ones, so the memory of a batch is bounded
    whatever the lengths; an item longer than ``max_frames`` goes alone.
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, pool_batches=16,
                 collate_fn=collate_utterances, drop_last=False, max_frames=None,
                 length_cap=None):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.pool_batches = int(pool_batches)
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.max_frames = max_frames
        self.length_cap = length_cap

    def __len__(self):
        if self.max_frames is not None:  # the sorted batching's count (shuffled: about)
            lengths = _dataset_lengths(self.dataset)
            order = np.argsort(lengths, kind="stable")
            bs = self.batch_size
            return len(self._bounded([order[i:i + bs] for i in range(0, len(order), bs)], lengths))
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _bounded(self, batches, lengths):
        """Cut length-sorted batches so that none exceeds ``max_frames`` padded frames."""
        if self.max_frames is None:
            return batches
        eff = lengths if self.length_cap is None else np.minimum(lengths, self.length_cap)
        out = []
        for b in batches:
            start = 0
            for stop in range(1, len(b) + 1):
                if stop - start > 1 and (stop - start) * eff[b[stop - 1]] > self.max_frames:
                    out.append(b[start:stop - 1])
                    start = stop - 1
            out.append(b[start:])
        return out

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
        batches = self._bounded(batches, lengths)
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        return batches

    def __iter__(self):
        for b in self._batches():
            yield self.collate_fn([self.dataset[int(i)] for i in b])


def held_out_speakers(y, speakers, fraction, seed):
    """A boolean mask holding out ``round(fraction * n_speakers)`` whole speakers (at least
    1, at most all but one), every class of ``y`` left in the rest; None when fewer than 2
    speakers exist, ``fraction <= 0``, or 20 draws leave a class without training data.
    The networks' internal validation and ``devicepool train``'s validation both use it.

    >>> int(held_out_speakers(np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"]), 0.5, 0).sum())
    2
    """
    speakers = np.asarray(speakers)
    y = np.asarray(y)
    uniq = np.unique(speakers)
    if len(uniq) < 2 or fraction <= 0:
        return None
    n_valid = min(len(uniq) - 1, max(1, int(round(fraction * len(uniq)))))
    rng = np.random.default_rng(seed)
    n_classes = len(np.unique(y))
    for _ in range(20):
        held = np.isin(speakers, rng.choice(uniq, size=n_valid, replace=False))
        if len(np.unique(y[~held])) == n_classes:
            return held
    return None


def _speaker_split(dataset, fraction, seed):
    """``(train, valid)`` Subsets holding out whole speakers (:func:`held_out_speakers`), or
    ``None`` when no such split exists."""
    held = held_out_speakers(dataset.y, dataset.speakers, fraction, seed)
    if held is None:
        return None
    return Subset(dataset, np.flatnonzero(~held)), Subset(dataset, np.flatnonzero(held))


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
    if fraction <= 0:
        return dataset, None
    if counts.min() < 2 or n_u - n_valid < n_c:
        why = ("a class has a single utterance, which cannot be both trained and validated on"
               if counts.min() < 2 else
               f"holding out {n_valid} of {n_u} utterances (at least one per class) would "
               "leave a class without training data")
        warnings.warn(f"no validation split is possible ({why}); training without validation "
                      "(pass groups=speakers, or train_split=None to silence this)",
                      UserWarning, stacklevel=4)
        return dataset, None
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    tr_u, va_u = next(sss.split(np.zeros(n_u), u_labels))
    in_valid = np.isin(groups, uniq[va_u])
    return Subset(dataset, np.flatnonzero(~in_valid)), Subset(dataset, np.flatnonzero(in_valid))


def inference_batches(lengths, batch_size, max_frames=None):
    """Index batches for prediction: sorted by length, at most ``batch_size`` items and
    at most ``max_frames`` padded frames each (default ``batch_size * 512``; an
    utterance longer than that goes alone), so memory is bounded whatever the lengths.

    Parameters
    ----------
    lengths : ndarray of int, shape (n_utterances,)
    batch_size : int
    max_frames : int, optional

    Yields
    ------
    ndarray of int
        Utterance indices of one batch.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    bs = max(1, int(batch_size))
    budget = bs * 512 if max_frames is None else int(max_frames)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and stop - start < bs and \
                (stop - start + 1) * lengths[order[stop]] <= budget:
            stop += 1
        yield order[start:stop]
        start = stop
