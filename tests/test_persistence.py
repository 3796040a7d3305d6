"""The weights-only model format refuses bad files with a message naming them."""

import os

import numpy as np
import pytest
import torch
from test_estimators import make_utterances

from devicepool import persistence
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


# --------------------------------------------------------------------------- devicepool.persistence


@pytest.fixture(scope="module")
def pipeline():
    """A fitted FilterBank + DACNN pipeline and waveforms to predict."""
    from sklearn.pipeline import Pipeline

    from devicepool.datasets import make_device_corpus
    from devicepool.estimators import DACNNClassifier
    from devicepool.features import FilterBank

    c = make_device_corpus(n_devices=2, n_speakers=2, n_utterances=2, modes="neutral", random_state=0)
    pipe = Pipeline([("features", FilterBank()), ("clf", DACNNClassifier(max_steps=2, random_state=0))])
    return pipe.fit(c.data, c.target), c.data


def test_a_pipeline_round_trips_bit_for_bit_with_its_provenance(pipeline, tmp_path):
    pipe, X = pipeline
    persistence.dump(pipe, tmp_path / "p.pt", provenance={"note": "x", "scores": np.arange(3.0)})
    raw = torch.load(tmp_path / "p.pt", weights_only=True)  # plain values and tensors only
    assert raw["format"] == persistence.FORMAT and raw["format_version"] == persistence.FORMAT_VERSION
    back, provenance = persistence.read(tmp_path / "p.pt")
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))
    assert provenance["note"] == "x" and provenance["scores"].tolist() == [0.0, 1.0, 2.0]
    assert isinstance(provenance["devicepool_version"], str)
    assert type(persistence.load(tmp_path / "p.pt")[-1]).__name__ == "DACNNClassifier"


def test_persistence_refuses_what_it_cannot_hold_or_read(pipeline, tmp_path):
    import joblib
    from sklearn.linear_model import LogisticRegression

    pipe, X = pipeline
    with pytest.raises(ValueError, match=r"object: .*LogisticRegression cannot be saved .*ALLOWED"):
        persistence.dump(LogisticRegression(), tmp_path / "lr.pt")
    assert not (tmp_path / "lr.pt").exists()
    payload = persistence.to_payload(pipe)
    torch.save(dict(payload, format_version=persistence.FORMAT_VERSION + 1), tmp_path / "new.pt")
    with pytest.raises(ValueError, match=r"new\.pt' has model file format 4; .*\(update devicepool\)"):
        persistence.load(tmp_path / "new.pt")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=r"foreign\.pt' is not a devicepool model file"):
        persistence.load(tmp_path / "foreign.pt")
    joblib.dump(pipe, tmp_path / "p.joblib")
    with pytest.raises(ValueError, match=r"p\.joblib' is a pickle .*refused"):
        persistence.load(tmp_path / "p.joblib")
    again, provenance = persistence.read(tmp_path / "p.joblib", allow_pickle=True)
    assert provenance is None
    np.testing.assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))


def test_a_file_from_before_the_dft_window_keeps_the_plain_dft():
    # 0.5 wrote DFTMagnitude without `window`, and its segments were not tapered: such a
    # file must read back as window=None, not as today's Hann default
    from devicepool.features import DFTMagnitude

    payload = persistence.to_payload(DFTMagnitude())
    assert persistence.from_payload(payload)[0].window == "hann"
    del payload["object"]["params"]["window"]
    old = persistence.from_payload(payload)[0]
    assert old.window is None
    x = np.random.default_rng(0).standard_normal(9000)
    np.testing.assert_allclose(old.transform([x])[0][0], np.abs(np.fft.rfft(x[:8000])), rtol=1e-5, atol=1e-3)


def test_a_network_from_before_utterance_norm_reads_back_without_it(pipeline):
    # 0.5 wrote SA-/DA-CNN without module__utterance_norm, and normalised no utterance's
    # level: such a file must read back with 0 (the weights were trained on that), not 2
    pipe, X = pipeline
    clf = pipe[-1]
    assert clf.module_.utterance_norm == 2
    payload = persistence.to_payload(clf)
    assert payload["object"]["params"]["module__utterance_norm"] == 2
    assert persistence.from_payload(payload)[0].module_.utterance_norm == 2
    del payload["object"]["params"]["module__utterance_norm"]
    old = persistence.from_payload(payload)[0]
    assert old.module_.utterance_norm == 0 and old.module_.norm.utterance_coefficients == 0
    feats = pipe[0].transform(X)
    assert not np.allclose(old.predict_proba(feats), clf.predict_proba(feats))  # it matters
