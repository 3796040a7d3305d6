"""The networks on a CUDA device: fit, predict, padding, save/load, the CLI's --device.

These run only where torch sees a GPU (they were run on an H200 / H100 device machine);
on a CPU-only machine the whole module is skipped, since there is nothing to run them on.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from devicepool.datasets import make_device_corpus
from devicepool.estimators import DACNNClassifier, DFTCNNClassifier, SACNNClassifier
from devicepool.features import DFTMagnitude, FilterBank

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    b = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=3, modes="neutral", random_state=0)
    return b, FilterBank().transform(b.data), DFTMagnitude().transform(b.data)


@pytest.mark.parametrize("Cls", [SACNNClassifier, DACNNClassifier, DFTCNNClassifier])
def test_fit_on_cuda_learns_and_matches_cpu_inference(Cls, corpus, tmp_path):
    b, fb, dft = corpus
    X = dft if Cls is DFTCNNClassifier else fb
    clf = Cls(device="cuda", max_steps=150, random_state=0).fit(X, b.target, groups=b.groups)
    assert next(clf.module_.parameters()).device.type == "cuda"
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert clf.score(X, b.target) > 0.6  # training accuracy, chance 1/3
    # padding never changes a prediction, on the GPU too
    alone = np.stack([clf.predict_proba([x])[0] for x in X[:4]])
    np.testing.assert_allclose(alone, proba[:4], atol=1e-4)
    # the weights-only file written on the GPU loads on the CPU with the same outputs
    clf.save(tmp_path / "m.pt")
    cpu = Cls.load(tmp_path / "m.pt")
    assert cpu.device == "cpu"
    # GPU and CPU arithmetic differ (cuDNN's LSTM, reduction order): on an H200 the
    # largest difference seen was 4.3e-4 in a probability (SA-CNN)
    np.testing.assert_allclose(cpu.predict_proba(X), proba, atol=2e-3)


def test_cli_train_and_predict_on_cuda(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    model = tmp_path / "m.pt"
    run = [sys.executable, "-m", "devicepool"]
    proc = subprocess.run([*run, "train", "--corpus", "demo", "--model", "da_cnn", "--device", "cuda",
                           "--max-epochs", "2", "-o", str(model)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    b = make_device_corpus(n_devices=6, n_speakers=1, n_utterances=1, modes="neutral", random_state=5)
    import soundfile as sf

    paths = []
    for i, x in enumerate(b.data[:3]):
        paths.append(tmp_path / f"q{i}.wav")
        sf.write(paths[-1], np.asarray(x, np.float32), b.sample_rate)
    # predict runs on the CPU: the file trained on the GPU is read there
    proc = subprocess.run([*run, "predict", str(model), *map(str, paths)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 3
