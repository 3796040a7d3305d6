"""Shared test fixtures."""

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The real-audio folder ``../shared/data`` (or $DEVICEPOOL_SHARED_DATA), or None."""
    env = os.environ.get("DEVICEPOOL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real audio folder; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real audio in ../shared/data is absent")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Run the tests' small networks on one intra-op thread.

    Tiny LSTM steps are latency bound: on a 2-core machine that is busy with anything
    else, OpenMP's second thread makes them orders of magnitude slower (measured: SA-CNN
    fit 3.6 s with 1 thread vs 63 s with 2 under load). The library itself never sets
    threads; the experiments and the CLI take a ``threads`` setting.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------ counting the bad inputs tried
# DEVICEPOOL_COUNT_BAD_INPUTS=path: every pytest.raises / pytest.warns the suite enters is
# counted (one bad input each) and the total written to ``path`` at the end of the run;
# docs/reliability.md quotes the count. Off by default: the wrappers are then not installed.

_BAD_INPUTS = {"raises": 0, "warns": 0}

if os.environ.get("DEVICEPOOL_COUNT_BAD_INPUTS"):
    _raises, _warns = pytest.raises, pytest.warns

    def _counted_raises(*args, **kwargs):
        _BAD_INPUTS["raises"] += 1
        return _raises(*args, **kwargs)

    def _counted_warns(*args, **kwargs):
        _BAD_INPUTS["warns"] += 1
        return _warns(*args, **kwargs)

    pytest.raises, pytest.warns = _counted_raises, _counted_warns

    def pytest_sessionfinish(session, exitstatus):
        import json

        with open(os.environ["DEVICEPOOL_COUNT_BAD_INPUTS"], "w") as fh:
            json.dump(dict(_BAD_INPUTS, tests=session.testscollected), fh)


#: the folder layout the command-line tests write corpora in
FOLDER_PATTERN = "{device}/{mode}/{speaker}_{utterance}.wav"


def folder_path(root, device, mode, speaker, utterance):
    """Where one recording goes in :data:`FOLDER_PATTERN` (spaces in device names and
    underscores in speakers and utterances made safe for the pattern)."""
    return root / FOLDER_PATTERN.format(device=str(device).replace(" ", "_"), mode=mode,
                                        speaker=str(speaker).replace("_", "-"),
                                        utterance=str(utterance).replace("_", "-"))


def write_folder_corpus(root, bunch):
    """An embedded-corpus ``Bunch`` as 16-bit WAV files under ``root``; returns ``root``."""
    import soundfile as sf

    for x, dev, spk, mode, utt in zip(bunch.data, bunch.target, bunch.groups, bunch.mode,
                                      bunch.utterance):
        path = folder_path(root, dev, mode, spk, utt)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.asarray(x, dtype=np.float32), bunch.sample_rate, subtype="PCM_16")
    return root


def mean_frame(X):
    """Each utterance's mean frame: ``(n_utterances, n_features)``."""
    return np.stack([u.mean(0) for u in X])


def mean_frame_logreg(random_state=None, **params):
    """A seconds-fast registered model for protocol and command-line tests: mean frame +
    logistic regression (module level, so loky workers unpickle it by reference)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(mean_frame), LogisticRegression(max_iter=500))
