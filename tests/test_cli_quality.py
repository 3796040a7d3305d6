"""``devicepool train`` says how good its model is and checks the task; ``predict`` answers
"unknown" for devices the model never heard; ``info`` shows what the model file holds (#22)."""

import json
import shutil

import numpy as np
import pytest
from conftest import FOLDER_PATTERN, write_folder_corpus
from test_cli import one_line_error, run_cli

from devicepool.datasets import make_device_corpus

SWAPPED = "{speaker}/{mode}/{device}_{utterance}.wav"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 devices x 5 speakers (neutral) as a folder. The 4th device's folder is moved out:
    the model never hears it; so are the 5th speaker's recordings of the other devices:
    new recordings of known devices."""
    b = make_device_corpus(n_devices=4, n_speakers=5, n_utterances=3, modes=("neutral",), random_state=1)
    root = write_folder_corpus(tmp_path_factory.mktemp("known"), b)
    unseen_name = sorted(p.name for p in root.iterdir())[-1]
    unseen = tmp_path_factory.mktemp("unseen") / unseen_name
    shutil.move(root / unseen_name, unseen)
    last = sorted({f.name.split("_")[0] for f in root.rglob("*.wav")})[-1]
    held = tmp_path_factory.mktemp("held")
    for f in sorted(root.rglob(f"{last}_*.wav")):
        dest = held / f.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, dest)
    return root, unseen, held


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    root = corpus[0]
    out = tmp_path_factory.mktemp("model") / "model.pt"
    proc = run_cli("train", "--corpus", "folder", "--root", root, "--pattern", FOLDER_PATTERN,
                   "--model", "da_cnn", "--max-epochs", "4", "-o", out, "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def test_train_names_the_devices_and_reports_a_speaker_disjoint_validation(trained, corpus):
    out, stderr = trained
    devices = sorted(p.name for p in corpus[0].iterdir())
    assert "36 utterances of 3 devices (4 speakers)" in stderr
    assert all(f"{d} 12" in stderr for d in devices)  # each device and its recordings
    line = next(ln for ln in stderr.splitlines() if ln.startswith("validation:"))
    assert "held-out speaker(s) (chance 33.3 %)" in line
    info = json.loads(run_cli("info", out, "--json").stdout)
    v = info["validation"]
    assert v["held_out_speakers"] and len(v["held_out_speakers"]) == 1  # round(0.2 x 4)
    assert v["n_utterances"] == 9 and v["chance"] == pytest.approx(1 / 3)
    assert 0 <= v["accuracy"] <= 1 and set(v["per_device"]) == set(devices)
    assert f"{100 * v['accuracy']:.1f} %" in line  # the line and the file say the same
    assert info["classes"] == devices and info["training"]["devices"] == {d: 12 for d in devices}
    assert info["open_set"]["references_per_device"] == {d: 10 for d in devices}
    text = run_cli("info", out)
    assert text.returncode == 0 and "validation: " in text.stdout and "chance" in text.stdout
    assert "open set: 'unknown'" in text.stdout and "forensic calibration: none" in text.stdout


def test_predict_answers_unknown_for_a_device_it_never_heard(trained, corpus):
    out, _ = trained
    root, unseen, held = corpus
    new = sorted(unseen.rglob("*.wav"))
    known = sorted(held.rglob("*.wav"))  # a speaker the model never heard, on known devices
    assert len(known) == 9 and len(new) == 15
    doc = json.loads(run_cli("predict", out, *new, *known, "--json").stdout)
    rows = {r["file"]: r for r in doc["predictions"]}
    unknown_new = [rows[str(f)]["status"] == "unknown" for f in new]
    kept_known = [rows[str(f)]["status"] == "ok" for f in known]
    assert np.mean(unknown_new) >= 0.9 and np.mean(kept_known) >= 0.9, (unknown_new, kept_known)
    r = next(rows[str(f)] for f in new if rows[str(f)]["status"] == "unknown")
    assert r["device"] is None and r["model_device"] in doc["classes"]
    assert r["reasons"][0].startswith("unlike every device the model knows")
    assert r["open_set"]["best_llr"] <= r["open_set"]["threshold"]
    closed = json.loads(run_cli("predict", out, *new, "--json", "--closed-set").stdout)
    assert all(p["status"] == "ok" for p in closed["predictions"])
    first_unknown = new[unknown_new.index(True)]
    text = run_cli("predict", out, first_unknown, "--quiet").stdout
    assert "\tunknown\t(unlike every device the model knows" in text


def test_a_swapped_pattern_is_caught_before_training(corpus, tmp_path):
    root = corpus[0]
    line = one_line_error(run_cli("train", "--corpus", "folder", "--root", root, "--pattern", SWAPPED,
                                  "--model", "da_cnn", "-o", tmp_path / "m.pt"))
    assert "grouped by speaker, not by device" in line and "swapped" in line
    assert not (tmp_path / "m.pt").exists()
    proc = run_cli("train", "--corpus", "folder", "--root", root, "--pattern", SWAPPED, "--model",
                   "da_cnn", "--max-epochs", "1", "--no-validation", "--skip-task-check",
                   "-o", tmp_path / "m.pt", "--quiet")
    assert proc.returncode == 0, proc.stderr
    info = run_cli("info", tmp_path / "m.pt").stdout
    assert "validation: none (--no-validation)" in info


def test_messages_point_the_right_way(trained, corpus, tmp_path):
    out, _ = trained
    wav = sorted(corpus[0].rglob("*.wav"))[0]
    notes = tmp_path / "notes.txt"
    notes.write_text("recorded with the office phone\n")
    line = one_line_error(run_cli("predict", notes, wav))
    assert "is a text file, not a model file" in line and "code" not in line
    line = one_line_error(run_cli("predict", wav, out))  # the arguments swapped
    assert "is a WAV audio file, not a model file" in line and "comes first" in line
    # a file the pattern does not match: the flag to skip it is named, not a Python parameter
    stray = corpus[0] / "README.wav"
    shutil.copy(wav, stray)
    try:
        line = one_line_error(run_cli("train", "--corpus", "folder", "--root", corpus[0], "--pattern",
                                      FOLDER_PATTERN, "-o", tmp_path / "m.pt"))
        assert "README.wav" in line and "--skip-unmatched" in line and "strict=False" not in line
        proc = run_cli("train", "--corpus", "folder", "--root", corpus[0], "--pattern", FOLDER_PATTERN,
                       "--skip-unmatched", "--no-validation", "--max-epochs", "1", "-o", tmp_path / "m.pt",
                       "--quiet")
        assert proc.returncode == 0, proc.stderr
    finally:
        stray.unlink()


def test_a_classical_model_has_the_gate_too_and_a_corpus_without_speakers_says_what_it_skips(
        corpus, tmp_path):
    root, unseen, held = corpus
    out = tmp_path / "gsv.pt"
    proc = run_cli("train", "--corpus", "folder", "--root", root, "--pattern",
                   "{device}/{mode}/{utterance}.wav", "--model", "gsv_svm", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "(unknown speakers)" in proc.stderr and "task check: skipped" in proc.stderr
    assert "validation: none (the corpus does not name its speakers" in proc.stderr
    doc = json.loads(run_cli("predict", out, *sorted(unseen.rglob("*.wav"))[:5],
                             *sorted(held.rglob("*.wav"))[:3], "--json").stdout)
    assert [r["status"] for r in doc["predictions"]] == ["unknown"] * 5 + ["ok"] * 3
    assert all(r["score"] is not None for r in doc["predictions"][5:])  # an SVM: scores


def test_an_empty_file_is_unknown_not_an_error(trained, tmp_path):
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    proc = run_cli("predict", trained[0], empty, "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["predictions"][0]
    assert row["status"] == "unknown" and row["reasons"][0].startswith("too short: 0.00 s")
