"""Conditions, folds, corpus validation and seeds of the protocols (the one place seeds are
derived: :func:`seed_for` for a fit, :func:`rng_for` for a draw)."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from ..datasets import Corpus

__all__ = ["CONDITIONS", "MODES", "PAPER_TABLE3", "available_conditions", "make_folds"]

#: condition code -> (training mode, test mode, column title)
CONDITIONS = {
    "MOBI": ("neutral", "neutral", "MOBI (Ex-1)"),
    "N": ("neutral", "neutral", "N"),
    "W": ("whisper", "whisper", "W"),
    "N/W": ("neutral", "whisper", "N/W"),
    "W/N": ("whisper", "neutral", "W/N"),
}

#: the paper's Table 3 (utterance-level accuracy, %)
PAPER_TABLE3 = {
    "dft_cnn": {"MOBI": 92.21, "N": 93.8, "W": 91.54, "N/W": 73.72, "W/N": 66.86},
    "sa_cnn": {"MOBI": 86.64, "N": 97.82, "W": 99.08, "N/W": 60.52, "W/N": 49.36},
    "da_cnn": {"MOBI": 94.56, "N": 99.12, "W": 99.37, "N/W": 69.45, "W/N": 51.4},
}

#: speaking modes, in the order fits are planned (and seeds derived)
MODES = ("neutral", "whisper")


def check_corpus(corpus, allow_unknown_speakers=False):
    """Validate a corpus and return it as a :class:`~devicepool.datasets.Corpus` whose
    ``data`` is a list and whose ``sample_rate`` is set (16000 when the corpus gives none).

    A :class:`~devicepool.datasets.Corpus` is taken as it is; a ``Bunch`` or mapping goes
    through :meth:`~devicepool.datasets.Corpus.from_bunch` (which checks the lengths and
    modes). A corpus whose loader says its speakers are unknown (``speakers_known=False``,
    e.g. a folder pattern without ``{speaker}``) is refused unless
    ``allow_unknown_speakers``: its ``groups`` are not speakers, so folds would not be
    speaker-disjoint.

    Examples
    --------
    >>> c = check_corpus({"data": [[0.0, 0.1]] * 2, "target": ["a", "b"], "groups": [1, 2]})
    >>> c.mode.tolist(), c.groups.tolist(), c.sample_rate
    (['neutral', 'neutral'], ['1', '2'], 16000)
    """
    c = Corpus.from_bunch(corpus)
    if len(c) == 0:
        raise ValueError("corpus is empty: no utterances")
    if not c.speakers_known and not allow_unknown_speakers:
        raise ValueError(
            "the corpus's speakers are unknown (its `groups` are utterance ids, e.g. a folder "
            "pattern without {speaker}): folds cannot be speaker-disjoint, as the paper's "
            "protocol requires; name the speakers in the pattern, or pass "
            "allow_unknown_speakers=True to fold by utterance groups"
        )
    return replace(c, data=list(c.data), sample_rate=int(c.sample_rate or 16000))


def check_seed(random_state):
    """``random_state`` as an int: a protocol's base seed (TypeError naming it otherwise)."""
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int, got {random_state!r}")
    return int(random_state)


def seed_for(random_state, model, train_mode, fold):
    """The seed of one fit, derived from the base seed, model, training mode and fold.

    Examples
    --------
    >>> seed_for(0, "da_cnn", "neutral", 0) == seed_for(0, "da_cnn", "neutral", 0)
    True
    >>> seed_for(0, "da_cnn", "neutral", 0) == seed_for(0, "da_cnn", "neutral", 1)
    False
    """
    ss = np.random.SeedSequence(
        [int(random_state), zlib.crc32(model.encode()), MODES.index(train_mode), int(fold)]
    )
    return int(ss.generate_state(1)[0] % (2**31 - 1))


def rng_for(random_state, *tag):
    """A numpy Generator drawn from the base seed and a tag (no global state): the
    forensic protocol's device and speaker folds and pair seeds.

    Examples
    --------
    >>> int(rng_for(0, "forensic-pairs", 1).integers(10)) == int(rng_for(0, "forensic-pairs", 1).integers(10))
    True
    """
    words = [zlib.crc32(str(t).encode()) for t in tag]
    return np.random.default_rng(np.random.SeedSequence([int(random_state), *words]))


def slug(condition):
    """Condition code as a file-name part (``"N/W"`` -> ``"N-W"``)."""
    return condition.replace("/", "-")


def available_conditions(mode):
    """Conditions a corpus with these ``mode`` labels can serve by default.

    A corpus with both neutral and whispered speech serves Ex-2 (``N``, ``W``, ``N/W``,
    ``W/N``); a neutral-only corpus serves Ex-1 (``MOBI``); a whisper-only one ``W``.

    Examples
    --------
    >>> available_conditions(["neutral", "whisper"])
    ['N', 'W', 'N/W', 'W/N']
    >>> available_conditions(["neutral"])
    ['MOBI']
    """
    modes = set(map(str, mode))
    if {"neutral", "whisper"} <= modes:
        return ["N", "W", "N/W", "W/N"]
    if modes == {"neutral"}:
        return ["MOBI"]
    if modes == {"whisper"}:
        return ["W"]
    return []


def select_conditions(conditions, mode):
    """The requested conditions the corpus can serve, and a note for each it cannot.

    Examples
    --------
    >>> select_conditions(["MOBI", "N/W"], ["neutral"])
    (['MOBI'], ['condition N/W skipped: the corpus has no whisper speech'])
    """
    present = set(mode)
    if conditions is None:
        conditions = available_conditions(mode)
    elif isinstance(conditions, str):
        conditions = [conditions]
    conds, notes = [], []
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {list(CONDITIONS)}")
        tr, te = CONDITIONS[c][:2]
        if tr not in present or te not in present:
            missing = sorted({tr, te} - present)
            notes.append(f"condition {c} skipped: the corpus has no {' or '.join(missing)} speech")
            continue
        if c not in conds:
            conds.append(c)
    return conds, notes


def make_folds(groups, n_splits=3):
    """Speaker-disjoint folds: the held-out speakers of each ``GroupKFold`` split.

    Parameters
    ----------
    groups : array-like of shape (n_utterances,)
        Speaker id per utterance (all modes together, so every mode gets the same folds).
    n_splits : int, default=3

    Returns
    -------
    folds : list of ndarray of bool, shape (n_utterances,)
        ``folds[k][i]`` is True when utterance ``i``'s speaker is held out in fold ``k``.

    Examples
    --------
    >>> sorted(f.astype(int).tolist() for f in make_folds(["a", "a", "b", "c"], 3))
    [[0, 0, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]]
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray([str(g) for g in groups])
    n_speakers = len(set(groups))
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if n_speakers < n_splits:
        raise ValueError(
            f"speaker-disjoint {n_splits}-fold cross-validation needs at least {n_splits} "
            f"speakers, the corpus has {n_speakers}"
        )
    folds = []
    for _, test in GroupKFold(n_splits=n_splits).split(np.zeros(len(groups)), groups=groups):
        held = np.zeros(len(groups), dtype=bool)
        held[np.isin(groups, np.unique(groups[test]))] = True
        folds.append(held)
    return folds
