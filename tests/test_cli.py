"""The devicepool command end to end: demo, evaluate (and resume), train, predict, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FOLDER_PATTERN, mean_frame_logreg, write_folder_corpus

from devicepool.cli import DEMO_SETTINGS, main
from devicepool.datasets import make_device_corpus

ROOT = Path(__file__).resolve().parents[1]
PATTERN = FOLDER_PATTERN



def _sigint_default():
    """In the child: Ctrl-C raises KeyboardInterrupt even when this test run was started
    with SIGINT ignored (a background job of a non-interactive shell inherits SIG_IGN,
    and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def run_cli(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "devicepool", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    """The embedded corpus written as real WAV files in a folder layout."""
    b = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)
    return write_folder_corpus(tmp_path_factory.mktemp("corpus"), b)


def one_line_error(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("devicepool: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------- errors


def test_help_and_version():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "demo" in proc.stdout and "predict" in proc.stdout
    assert main(["--version"]) == 0


def test_missing_root_is_one_line_error(tmp_path):
    line = one_line_error(run_cli("evaluate", "--corpus", "mobiphone", "--root", tmp_path / "nope"))
    assert "does not exist" in line and "nope" in line
    line = one_line_error(run_cli("evaluate", "--corpus", "wspire"))
    assert "--root is required" in line


def test_unknown_model_and_corpus_are_one_line_errors(tmp_path):
    line = one_line_error(run_cli("evaluate", "--corpus", "demo", "--models", "da_cnn,resnet"))
    assert "unknown model 'resnet'" in line
    line = one_line_error(run_cli("evaluate", "--corpus", "timit", "--root", tmp_path))
    assert "timit" in line
    line = one_line_error(run_cli("train", "--corpus", "demo", "--model", "lstm", "-o", tmp_path / "m"))
    assert "lstm" in line
    assert main(["evaluate", "--corpus", "folder", "--root", str(tmp_path)]) == 2  # no --pattern


def test_unreadable_files_are_one_line_errors(tmp_path, trained_model):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio")
    for strict, code in ((["--strict"], 2), ([], 1)):  # without --strict: on its line, exit 1
        line = one_line_error(run_cli("predict", trained_model, bad, *strict), code)
        assert "broken.wav" in line
        line = one_line_error(run_cli("predict", trained_model, tmp_path / "missing.wav", *strict), code)
        assert "missing.wav" in line
    line = one_line_error(run_cli("predict", tmp_path / "no-model.pt", bad))
    assert "no-model.pt" in line
    line = one_line_error(run_cli("predict", bad, bad))
    assert "broken.wav' is a text file, not a model file" in line
    bad.write_bytes(bytes(range(256)) * 4)  # binary, neither audio nor text nor a model
    line = one_line_error(run_cli("predict", bad, bad))
    assert "cannot load model" in line


# ----------------------------------------------------------------------------- train / predict


@pytest.fixture(scope="module")
def trained_model(folder_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.pt"
    status = main(["train", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
                   "--model", "da_cnn", "--max-epochs", "3", "-o", str(out), "--quiet"])
    assert status == 0 and out.is_file()
    return out


def test_predict_json_and_text(trained_model, folder_corpus):
    files = sorted(folder_corpus.rglob("*.wav"))[:4]
    proc = run_cli("predict", trained_model, *files, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["classes"]) == 3
    assert [p["file"] for p in doc["predictions"]] == [str(f) for f in files]
    for p in doc["predictions"]:
        assert p["device"] in doc["classes"] and p["runner_up"] in doc["classes"]
        assert p["device"] != p["runner_up"]
        assert 0 <= p["runner_up_probability"] <= p["probability"] <= 1
        assert p["probability"] + p["runner_up_probability"] <= 1 + 1e-6
    proc = run_cli("predict", trained_model, *files, "--quiet")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and all("runner-up" in ln for ln in lines)
    assert lines[0].split("\t")[1] == doc["predictions"][0]["device"]


def test_train_one_mode_other_model(folder_corpus, tmp_path):
    out = tmp_path / "sa.pt"
    assert main(["train", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
                 "--model", "sa_cnn", "--mode", "whisper", "--max-epochs", "2", "-o", str(out),
                 "--quiet"]) == 0
    from devicepool.cli._modelfile import load_model

    pipe = load_model(out)
    assert type(pipe[-1]).__name__ == "SACNNClassifier"
    assert pipe[-1].max_epochs == 2 and len(pipe.classes_) == 3
    assert main(["train", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
                 "--mode", "whisper", "-o", str(tmp_path / "x.pt"), "--quiet",
                 "--max-epochs", "0"]) == 2


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_interrupted_then_resumed(folder_corpus, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--corpus", "folder", "--root", folder_corpus, "--pattern", PATTERN,
            "--models", "da_cnn", "--max-epochs", "40", "--out", out, "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "devicepool", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)
    deadline = time.monotonic() + 600
    while not list((out / "results").rglob("*.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: one line, status 130, finished results kept
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    finished = sorted((out / "results").rglob("*.json"))
    assert 1 <= len(finished) < 12
    stamps = {f: f.stat().st_mtime_ns for f in finished}
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert {f: f.stat().st_mtime_ns for f in finished} == stamps
    assert len(list((out / "results").rglob("*.json"))) == 12
    table = done.stdout
    assert "| DA-CNN |" in table and "N/W" in table
    report = (out / "report.md").read_text()
    assert "device classification accuracy" in report and "Table 3" not in report and (out / "fig2a-band-weights.png").is_file()
    # a third run recomputes nothing and prints the same table
    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout == table
    assert len(list((out / "results").rglob("*.json"))) == 12


def test_a_registered_model_is_a_command_line_choice(folder_corpus, tmp_path, capsys):
    from devicepool.protocol import register_model, unregister_model

    corpus = ["--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN]
    register_model("lr_cli", mean_frame_logreg, feature="fbank", label="LR (test)")
    try:
        assert main(["evaluate", *corpus, "--models", "lr_cli", "--out", str(tmp_path / "e"),
                     "--quiet"]) == 0
        assert "| LR (test) |" in capsys.readouterr().out
        assert len(list((tmp_path / "e" / "results" / "lr_cli").rglob("*.json"))) == 12
        # not a devicepool network: the weights-only file cannot hold it, a pickle on request
        assert main(["train", *corpus, "--model", "lr_cli", "-o", str(tmp_path / "lr.joblib"),
                     "--quiet"]) == 2
        assert "--allow-pickle" in capsys.readouterr().err
        assert main(["train", *corpus, "--model", "lr_cli", "-o", str(tmp_path / "lr.joblib"),
                     "--quiet", "--allow-pickle"]) == 0
        import joblib

        pipe = joblib.load(tmp_path / "lr.joblib")
        assert [type(s).__name__ for _, s in pipe.steps] == ["FilterBank", "Pipeline"]
        assert len(pipe.classes_) == 3
    finally:
        unregister_model("lr_cli")
    capsys.readouterr()
    assert main(["evaluate", *corpus, "--models", "lr_cli", "--out", str(tmp_path / "e")]) == 2
    assert "unknown model 'lr_cli'" in capsys.readouterr().err


def test_evaluate_runs_the_classical_systems_beside_a_network(folder_corpus, tmp_path, capsys):
    corpus = ["--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN]
    # --max-epochs reaches the network only; the classical systems have no epochs
    assert main(["evaluate", *corpus, "--models", "gsv_svm,gmm_ubm,da_cnn", "--max-epochs", "1",
                 "--conditions", "N,W/N", "--out", str(tmp_path / "e"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| GSV-SVM" in out and "| GMM-UBM" in out and "| DA-CNN |" in out
    records = [json.loads(p.read_text()) for p in (tmp_path / "e" / "results").rglob("*.json")]
    assert {r["model"] for r in records} == {"gsv_svm", "gmm_ubm", "da_cnn"}
    assert {r["model_params"].get("max_epochs") for r in records if r["model"] != "da_cnn"} == {None}


def test_evaluate_on_a_users_corpus_has_neutral_titles(folder_corpus, tmp_path, capsys):
    """A user's folder is not MOBIPHONE: no 'MOBI (Ex-1)' column, no paper values or claims;
    Fig. 2(a)'s caption names the models drawn (a neutral-only corpus has no whisper model)."""
    neutral_only = tmp_path / "neutral"
    for f in folder_corpus.rglob("*.wav"):
        if "/neutral/" in str(f):
            dest = neutral_only / f.relative_to(folder_corpus)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.read_bytes())
    out = tmp_path / "e"
    assert main(["evaluate", "--corpus", "folder", "--root", str(neutral_only), "--pattern", PATTERN,
                 "--models", "da_cnn", "--max-epochs", "1", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    report = (out / "report.md").read_text()
    for text in (table, report, (out / "table3.md").read_text()):
        assert "N (neutral-only corpus)" in text and "MOBI (Ex-1)" not in text
        assert "(94.56)" not in text  # the paper's DA-CNN MOBI value
    assert "The paper's claims" not in report and "paper" not in (out / "table3.csv").read_text()
    assert "DA-CNN band weights, neutral model**" in report and "whisper" not in report.split("Fig. 2(a)")[1][:80]


def test_demo_with_threads_runs_one_fit_at_a_time(monkeypatch, tmp_path):
    from devicepool.cli import _commands

    seen = []

    def fake_run_protocol(corpus, **kwargs):
        seen.append(kwargs["n_jobs"])
        raise KeyboardInterrupt  # stop after the first call: only n_jobs is checked here

    monkeypatch.setattr("devicepool.protocol.run_protocol", fake_run_protocol)
    for argv, jobs in ((["--threads", "1"], 1), ([], 2), (["--threads", "1", "--n-jobs", "2"], 2)):
        assert main(["demo", "--out", str(tmp_path / "d"), "--quiet", *argv]) == 130
        assert seen[-1] == jobs, argv
    assert _commands.DEMO_SETTINGS["full"]["n_jobs"] == 2


def test_train_and_predict_classical_models_weights_only(folder_corpus, tmp_path, capsys):
    corpus = ["--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN]
    files = sorted(str(p) for p in folder_corpus.rglob("*.wav"))[:3]
    for model, kind in (("gsv_svm", "score"), ("gmm_ubm", "probability")):
        out = tmp_path / f"{model}.pt"
        assert main(["train", *corpus, "--model", model, "-o", str(out), "--quiet"]) == 0
        assert out.read_bytes()[:4] == b"PK\x03\x04"  # torch.save's zip: weights only, no pickle
        capsys.readouterr()
        assert main(["predict", str(out), *files, "--json"]) == 0
        captured = capsys.readouterr()
        rows = json.loads(captured.out)["predictions"]
        assert len(rows) == 3 and all(r[kind] is not None for r in rows)
        if kind == "score":
            assert all(r["probability"] is None for r in rows) and "no probabilities" in captured.err
        else:
            assert all(0 <= r["probability"] <= 1 for r in rows)
        assert main(["predict", str(out), files[0]]) == 0
        line = capsys.readouterr().out.strip()
        assert line.count("\t") == 4 and (("score " in line) == (kind == "score"))
    # the classical systems give no embeddings for likelihood ratios: refused before any work
    assert main(["calibrate", "--model", str(tmp_path / "gmm_ubm.pt"), *corpus,
                 "-o", str(tmp_path / "c.pt")]) == 2
    assert "gives no device embeddings" in capsys.readouterr().err
    assert not (tmp_path / "c.pt").exists()


def test_scheduler_without_distributed_is_a_one_line_error(folder_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main(["evaluate", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
                 "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["devicepool: error: --scheduler needs dask.distributed: "
                   "pip install 'devicepool[distributed]'"]


# ----------------------------------------------------------------------------- demo


def _check_demo_output(out):
    report = (out / "report.md").read_text()
    for col in ("MOBI (Ex-1)", "| N |", "| W |", "N/W", "W/N", "DFT-CNN (baseline)", "SA-CNN", "DA-CNN"):
        assert col in report, col
    for name in ("fig2a-band-weights.png", "fig2b-time-weights-neutral.png",
                 "fig2c-time-weights-whisper.png", "table3.csv", "table3.md", "folds.csv"):
        assert (out / name).is_file(), name
        assert f"({name})" in report or name.endswith((".csv", ".md"))
    assert "Chance level" in report and "## The paper's claims in this run" in report
    for claim in ("DA-CNN ≥ SA-CNN", "DA-CNN ≥ DFT-CNN baseline", "whisper ≥ neutral", "mismatch drop"):
        assert claim in report, claim
    assert "band weights, neutral and whisper models**" in report
    rows = (out / "table3.csv").read_text().strip().splitlines()
    assert len(rows) == 4
    for row in rows[1:]:
        cells = row.split(",")
        assert all(c != "" for c in cells), row  # a full table: every cell has a value


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    _check_demo_output(out)


@pytest.mark.slow
def test_demo_full_under_five_minutes(tmp_path):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    proc = run_cli("demo", "--out", out, timeout=900)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    _check_demo_output(out)
    assert elapsed < 300, f"demo took {elapsed:.0f} s"
    assert DEMO_SETTINGS["full"]["ex2"]["modes"] == ("neutral", "whisper")
    import csv

    with open(out / "folds.csv") as fh:
        n_test = [int(r["n_test"]) for r in csv.DictReader(fh)]
    assert min(n_test) >= 144, min(n_test)


def test_evaluate_refuses_unknown_speakers_unless_asked(tmp_path):
    rng = np.random.default_rng(0)
    for dev in ("a", "b"):
        for utt in range(6):
            path = tmp_path / "c" / dev / f"u{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(8000), 16000)
    base = ["evaluate", "--corpus", "folder", "--root", str(tmp_path / "c"), "--pattern",
            "{device}/{utterance}.wav", "--models", "da_cnn", "--max-epochs", "1", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "o1")]) == 2  # one line: speakers unknown
    assert main(base + ["--out", str(tmp_path / "o2"), "--allow-unknown-speakers"]) == 0


def test_train_fits_with_the_speakers_only_when_the_corpus_knows_them():
    from devicepool.cli._commands import _labelled_set
    from devicepool.cli._common import UsageError
    from devicepool.datasets import Corpus

    bunch = {"data": [np.zeros(4)] * 4, "target": ["a", "b", "a", "b"], "groups": ["s1", "s1", "s2", "s2"],
             "mode": ["neutral", "neutral", "whisper", "whisper"]}
    data, target, groups = _labelled_set(Corpus.from_bunch(bunch), "neutral")
    assert len(data) == 2 and target.tolist() == ["a", "b"] and groups.tolist() == ["s1", "s1"]
    assert _labelled_set(Corpus.from_bunch(dict(bunch, speakers_known=False)), "all")[2] is None
    with pytest.raises(UsageError, match="no whisper speech"):
        _labelled_set(Corpus.from_bunch(dict(bunch, mode=["neutral"] * 4)), "whisper")


def test_a_misspelt_pattern_field_is_an_error_before_any_file_is_read(folder_corpus, capsys):
    """{speakr} would have loaded a corpus without speakers (a raw warning) and trained."""
    status = main(["train", "--corpus", "folder", "--root", str(folder_corpus), "--pattern",
                   "{device}/{mode}/{speakr}_{utterance}.wav", "-o", "never.pt", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "field {speakr} is not a known field; did you mean {speaker}?" in err
    assert not os.path.exists("never.pt")
    from devicepool.cli._commands import _check_pattern_fields

    _check_pattern_fields("{device}/{session}/{speaker}_{utterance}.wav")  # a field of one's own
