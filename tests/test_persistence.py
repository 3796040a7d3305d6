"""The weights-only model format refuses bad files with a message naming them."""

import os

import numpy as np
import pytest
import torch
from test_estimators import make_utterances

from devicepool.estimators import SACNNClassifier


class _Trojan:
    """Unpickling it would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, y = make_utterances(12, n_classes=2)
    clf = SACNNClassifier(max_epochs=1, random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "sa.pt"
    clf.save(path)
    return path, clf, X


def test_round_trip(saved):
    path, clf, X = saved
    np.testing.assert_allclose(SACNNClassifier.load(path).predict_proba(X), clf.predict_proba(X),
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "trojan"])
def test_bad_model_files_are_refused_naming_the_file(saved, tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    marker = tmp_path / "pwned"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        data = saved[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"format": "devicepool.estimator", "payload": _Trojan(marker)}, path)
    with pytest.raises(ValueError, match=rf"file '.*{kind}\.pt': not a readable devicepool model") as err:
        SACNNClassifier.load(path)
    assert "weights_only=False" not in str(err.value)
    assert not marker.exists()  # nothing from the file ran


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"file '.*nope\.pt': no such model file"):
        SACNNClassifier.load(tmp_path / "nope.pt")
