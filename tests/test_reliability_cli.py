"""The command's reliability guarantees (issue 11): weights-only model files, pickles only
on request, Ctrl-C and SIGTERM, early output checks, closed pipes, odd file names, sample
rates, worker processes, locked output folders. See docs/reliability.md."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FOLDER_PATTERN, folder_path, mean_frame_logreg

from devicepool.audio import resample
from devicepool.cli import _commands as commands
from devicepool.cli import _modelfile as modelfile
from devicepool.cli import build_parser, main
from devicepool.cli._modelfile import load_model
from devicepool.datasets import make_device_corpus

ROOT = Path(__file__).resolve().parents[1]
PATTERN = FOLDER_PATTERN
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")



def _sigint_default():
    """In the child: Ctrl-C raises KeyboardInterrupt even when this test run was started
    with SIGINT ignored (a background job of a non-interactive shell inherits SIG_IGN,
    and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def cli(*args):
    return [sys.executable, "-m", "devicepool", *(a if isinstance(a, bytes) else str(a) for a in args)]


def run_cli(*args, timeout=600):
    return subprocess.run(cli(*args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc_or_err, code=2):
    if isinstance(proc_or_err, str):
        err = proc_or_err
    else:
        assert proc_or_err.returncode == code, (proc_or_err.returncode, proc_or_err.stderr)
        err = proc_or_err.stderr
    assert "Traceback" not in err
    assert "weights_only=False" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("devicepool: error:"), err
    return lines[0]


def write_corpus(root, rate=16000, rate_of=lambda path: None):
    """The embedded corpus as WAV files at ``rate`` (``rate_of(path)`` overrides per file)."""
    b = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)
    for x, dev, spk, mode, utt in zip(b.data, b.target, b.groups, b.mode, b.utterance):
        path = folder_path(root, dev, mode, spk, utt)
        path.parent.mkdir(parents=True, exist_ok=True)
        r = rate_of(path) or rate
        x = np.asarray(x, dtype=np.float64)
        if r != b.sample_rate:
            x = resample(x, b.sample_rate, r)
        sf.write(path, x.astype(np.float32), r, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def corpus_args(root):
    return ["--corpus", "folder", "--root", str(root), "--pattern", PATTERN]


@pytest.fixture(scope="module")
def trained(folder_corpus, tmp_path_factory):
    """A da_cnn model file written by ``devicepool train`` and the pipeline it saved."""
    out = tmp_path_factory.mktemp("model") / "model.pt"
    saved = []
    real_save = modelfile.save_model

    def spy(pipe, *a, **k):
        saved.append(pipe)
        return real_save(pipe, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(modelfile, "save_model", spy)
    try:
        assert main(["train", *corpus_args(folder_corpus), "--model", "da_cnn", "--max-epochs", "2",
                     "-o", str(out), "--quiet"]) == 0
    finally:
        mp.undo()
    return out, saved[0]


def wav(path, rate=16000, seconds=0.5, seed=0):
    x = np.random.default_rng(seed).normal(0, 0.1, int(rate * seconds)).astype(np.float32)
    sf.write(path, x, rate, subtype="PCM_16")
    return path


# ----------------------------------------------------------------------------- 1. model files


def test_train_writes_a_weights_only_file_and_predict_round_trips(trained, folder_corpus):
    out, pipe = trained
    payload = torch.load(out, weights_only=True)  # plain values and tensors only
    assert payload["format"] == "devicepool.pipeline" and payload["format_version"] == 3
    assert payload["provenance"]["model"] == "da_cnn"
    features, clf = (step["__tuple__"][1] for step in payload["object"]["params"]["steps"])
    assert features["class"] == "devicepool.features.FilterBank"
    assert features["params"] == pipe[0].get_params()
    assert clf["class"] == "devicepool.estimators.DACNNClassifier"
    files = [str(f) for f in sorted(folder_corpus.rglob("*.wav"))[:6]]
    proc = run_cli("predict", out, *files, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    proba = pipe.predict_proba(files)
    assert [r["device"] for r in rows] == list(pipe.predict(files))
    np.testing.assert_allclose([r["probability"] for r in rows], proba.max(1), rtol=1e-6)
    rebuilt = load_model(out)  # the same rebuild in-process: identical numbers
    np.testing.assert_array_equal(rebuilt.predict_proba(files), proba)
    assert [type(s).__name__ for _, s in rebuilt.steps] == ["FilterBank", "DACNNClassifier"]


class Trojan:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_trojaned_pickle_is_refused_without_allow_pickle(tmp_path):
    import joblib

    wav(tmp_path / "a.wav")
    marker = tmp_path / "MARKER"
    for name, dump in (("model.joblib", joblib.dump), ("model.pt", joblib.dump),
                       ("compressed.joblib", lambda o, p: joblib.dump(o, p, compress=3))):
        dump(Trojan(marker), tmp_path / name)
        line = one_line_error(run_cli("predict", tmp_path / name, tmp_path / "a.wav"))
        assert name in line and "is a pickle" in line and "--allow-pickle" in line
        assert "runs any code it contains" in line
        assert not marker.exists(), name
    # torch.save's own pickle (a zip) is never unpickled, --allow-pickle or not
    torch.save({"format": "devicepool.pipeline", "x": Trojan(marker)}, tmp_path / "zip.pt")
    for flags in ((), ("--allow-pickle",)):
        line = one_line_error(run_cli("predict", tmp_path / "zip.pt", tmp_path / "a.wav", *flags))
        assert "zip.pt" in line and "refused" in line
        assert not marker.exists()


def test_allow_pickle_loads_an_old_joblib_model(trained, tmp_path):
    import joblib

    out, pipe = trained
    joblib.dump(pipe, tmp_path / "old.joblib")  # what devicepool train wrote before
    files = [wav(tmp_path / "a.wav"), wav(tmp_path / "b.wav", seed=1)]
    line = one_line_error(run_cli("predict", tmp_path / "old.joblib", *files))
    assert "--allow-pickle" in line
    old = run_cli("predict", tmp_path / "old.joblib", *files, "--allow-pickle", "--json")
    # the pickle has no open-set references: the weights-only file answers closed-set to compare
    new = run_cli("predict", out, *files, "--json", "--closed-set")
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert json.loads(old.stdout)["predictions"] == json.loads(new.stdout)["predictions"]


def test_a_corrupt_or_truncated_model_file_is_a_one_line_error(trained, tmp_path):
    out, pipe = trained
    wav(tmp_path / "a.wav")
    data = out.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "flipped.pt").write_bytes(data[:100] + bytes(200) + data[300:])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a model\n")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    pipe[-1].save(tmp_path / "classifier-only.pt")  # a classifier's own file: no features
    payload = torch.load(out, weights_only=True)
    payload["object"]["params"]["steps"][0]["__tuple__"][1]["class"] = "os.system"
    torch.save(payload, tmp_path / "unknown-class.pt")
    payload = torch.load(out, weights_only=True)
    payload["object"]["params"]["steps"][1]["__tuple__"][1]["fitted"]["state_dict"].popitem()
    torch.save(payload, tmp_path / "missing-weights.pt")
    for name in ("truncated.pt", "flipped.pt", "empty.pt", "text.pt", "foreign.pt",
                 "classifier-only.pt", "unknown-class.pt", "missing-weights.pt"):
        line = one_line_error(run_cli("predict", tmp_path / name, tmp_path / "a.wav"))
        assert f"'{tmp_path / name}'" in line, line
        assert "model file" in line, line


# ----------------------------------------------------------------------------- 2. Ctrl-C in train


def _read_into(fd, buffer):
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side has closed
            break
        if not chunk:
            break
        buffer.append(chunk)


def _terminal():
    """A pseudo-terminal (master, slave) of 24 x 100: the epoch bar shows on a terminal only."""
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def test_ctrl_c_during_train_exits_130_and_writes_nothing(folder_corpus, tmp_path):
    out = tmp_path / "models" / "model.pt"
    master, slave = _terminal()
    proc = subprocess.Popen(cli("train", *corpus_args(folder_corpus), "--model", "da_cnn",
                                "--max-epochs", "100000", "-o", out),
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=slave,
                            preexec_fn=_sigint_default)
    os.close(slave)
    err = []
    reader = threading.Thread(target=_read_into, args=(master, err), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while b"DACNNClassifier:" not in b"".join(err):  # the epoch bar: training has started
        assert proc.poll() is None, b"".join(err).decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=30)
    os.close(master)
    text = b"".join(err).decode().replace("\r\n", "\n")
    assert "Traceback" not in text
    assert text.rstrip().endswith("devicepool: interrupted (no model file was written)")
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    assert list(out.parent.iterdir()) == []


def test_an_interrupted_save_keeps_the_old_model_and_no_tmp(folder_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the previous model")

    def dying_save(obj, fh):
        fh.write(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    assert main(["train", *corpus_args(folder_corpus), "--max-epochs", "1", "-o", str(out), "--quiet"]) == 130
    assert "no model file was written" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# ----------------------------------------------------------------------------- 3. -o checked first


def _unwritable_folder(tmp_path):
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    try:  # root writes anywhere permissions allow; sysfs refuses new files even to root
        open("/sys/devicepool-probe", "wb").close()
    except OSError:
        return Path("/sys")
    os.remove("/sys/devicepool-probe")
    pytest.skip("no folder that refuses writes to this user")


@pytest.mark.parametrize("case", ["folder", "unwritable", "parent-is-a-file", "tmp-is-a-folder"])
def test_output_is_checked_before_the_corpus_is_read(case, tmp_path, monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(commands, "_load_corpus", lambda args: loaded.append(args))
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "m.pt.tmp").mkdir()
    output, expected = {
        "folder": (tmp_path, "is a folder"),
        "unwritable": (lambda: _unwritable_folder(tmp_path) / "model.pt", "cannot write"),
        "parent-is-a-file": (tmp_path / "a-file" / "sub" / "model.pt", "cannot create the folder"),
        "tmp-is-a-folder": (tmp_path / "m.pt", "is a folder"),
    }[case]
    output = output() if callable(output) else output
    t0 = time.perf_counter()
    status = main(["train", "--corpus", "demo", "-o", str(output)])
    assert status == 2 and time.perf_counter() - t0 < 10
    line = one_line_error(capsys.readouterr().err)
    assert expected in line and str(output).split(os.sep)[-1] in line, line
    assert loaded == []  # failed before any corpus loading or training


def test_missing_output_folders_are_created_before_training(tmp_path, monkeypatch, capsys):
    def stop(args):
        assert (tmp_path / "new" / "deeper").is_dir()  # created before the corpus is read
        raise commands.UsageError("stop here")

    monkeypatch.setattr(commands, "_load_corpus", stop)
    assert main(["train", "--corpus", "demo", "-o", str(tmp_path / "new" / "deeper" / "m.pt")]) == 2
    assert "stop here" in capsys.readouterr().err
    assert list((tmp_path / "new" / "deeper").iterdir()) == []  # no probe file left


def test_a_leftover_tmp_is_replaced_and_the_mode_follows_the_umask(folder_corpus, tmp_path, capsys):
    out = tmp_path / "model.pt"
    leftover = Path(f"{out}.tmp")  # of devicepool 0.5, and of the atomic writer now
    leftover.write_bytes(b"half a model from a killed run")
    leftover.chmod(0o600)
    killed = tmp_path / ".model.pt.a1B2c3_d.tmp"
    killed.write_bytes(b"half a model")
    other = tmp_path / ".other.pt.a1B2c3_d.tmp"  # of another output: kept
    other.write_bytes(b"not ours")
    old_umask = os.umask(0o027)
    try:
        assert main(["train", *corpus_args(folder_corpus), "--max-epochs", "1", "-o", str(out)]) == 0
    finally:
        os.umask(old_umask)
    assert "left by an interrupted run" in capsys.readouterr().err
    assert not leftover.exists() and not killed.exists() and other.exists()
    assert out.stat().st_mode & 0o777 == 0o640
    assert len(load_model(out).classes_) == 3


# ----------------------------------------------------------------------------- 4. closed pipe


def test_predict_into_a_closed_pipe_exits_quietly(trained, tmp_path):
    out, _ = trained
    folder = tmp_path / ("a-long-folder-name-" * 8)
    folder.mkdir()
    audio = wav(folder / "short.wav", seconds=0.3)
    files = [audio] * 1500  # about 400 kB of output: far more than a pipe holds
    proc = subprocess.Popen(cli("predict", out, *files, "--min-seconds", "0.2", "--closed-set"), cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert first.startswith(str(audio).encode()) and first.count(b"\t") == 4
    for noise in ("Traceback", "Exception ignored", "BrokenPipe", "Broken pipe", "devicepool:"):
        assert noise not in err, err  # quiet: no traceback, no "Exception ignored", no error line


# ----------------------------------------------------------------------------- 5. odd file names


def test_odd_file_names_survive_the_tsv_and_json_output(trained, tmp_path):
    out, _ = trained
    names = ["tab\there.wav", "new\nline.wav", "cr\rname.wav", "back\\slash.wav",
             "plain.wav", os.fsdecode(b"latin-\xe9.wav")]
    escaped = ["tab\\there.wav", "new\\nline.wav", "cr\\rname.wav", "back\\\\slash.wav",
               "plain.wav", "latin-\\xe9.wav"]
    paths = []
    for i, n in enumerate(names):  # written under a plain name: libsndfile wants valid text
        os.rename(wav(tmp_path / f"{i}.wav", seed=i), os.fsencode(tmp_path / n))
        paths.append(tmp_path / n)
    proc = subprocess.run(cli("predict", out, *map(os.fsencode, paths), "--quiet"), cwd=ROOT, env=ENV,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == len(names) + 1  # one line per file
    assert [ln.split("\t")[0] for ln in lines[:-1]] == [str(tmp_path / e) for e in escaped]
    proc = subprocess.run(cli("predict", out, *map(os.fsencode, paths), "--json"), cwd=ROOT, env=ENV,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [r["file"] for r in json.loads(proc.stdout)["predictions"]] == [str(p) for p in paths]


def test_tsv_field_escapes():
    assert commands.tsv_field("a\\t\tb\nc\rd") == "a\\\\t\\tb\\nc\\rd"


# ----------------------------------------------------------------------------- 6. --sample-rate


def test_sample_rate_reads_a_mixed_rate_folder(tmp_path, capsys):
    root = write_corpus(tmp_path / "corpus", rate=8000,
                        rate_of=lambda p: 16000 if p.name.startswith("spk01_spk01-u01") else None)
    out = tmp_path / "model8k.pt"
    args = ["train", *corpus_args(root), "--max-epochs", "1", "-o", str(out), "--quiet"]
    assert main(args) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "different sample rates" in line and "--sample-rate" in line
    assert main(args + ["--sample-rate", "8000"]) == 0
    payload = torch.load(out, weights_only=True)
    assert payload["object"]["params"]["steps"][0]["__tuple__"][1]["params"]["sample_rate"] == 8000
    assert main(["predict", str(out), str(next(root.rglob("spk01_spk01-u01*.wav"))), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["predictions"][0]
    assert row["native_rate"] == 16000 and row["resampled"] is True


def test_evaluate_passes_sample_rate_to_the_loader(folder_corpus, tmp_path, monkeypatch, capsys):
    import devicepool.protocol

    seen = {}

    class Result:
        notes = []

        def to_markdown(self, paper=True, own_corpus=False):
            return "table"

    def fake_run_protocol(corpus, wait=False, **kwargs):
        seen.update(rate=corpus.sample_rate, wait=wait)
        return Result()

    monkeypatch.setattr(devicepool.protocol, "run_protocol", fake_run_protocol)
    assert main(["evaluate", *corpus_args(folder_corpus), "--sample-rate", "8000",
                 "--out", str(tmp_path), "--quiet", "--wait"]) == 0
    assert seen == {"rate": 8000, "wait": True}
    assert main(["evaluate", *corpus_args(folder_corpus), "--out", str(tmp_path), "--quiet"]) == 0
    assert seen == {"rate": 16000, "wait": False}


# ----------------------------------------------------------------------------- 7. rates reported


def test_predict_reports_native_rates_and_resampling(trained, tmp_path):
    out, _ = trained
    files = [wav(tmp_path / "at16k.wav", 16000), wav(tmp_path / "at22k.wav", 22050)]
    # --closed-set: white noise is no device the model knows (the open set is tested elsewhere)
    proc = run_cli("predict", out, *files, "--json", "--closed-set")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["sample_rate"] == 16000
    assert [(r["native_rate"], r["resampled"]) for r in doc["predictions"]] == [(16000, False), (22050, True)]
    for r in doc["predictions"]:  # the whole probability vector, summing to one
        assert r["status"] == "ok" and set(r["probability_per_device"]) == set(doc["classes"])
        assert abs(sum(r["probability_per_device"].values()) - 1) < 1e-5
        assert r["probability"] == max(r["probability_per_device"].values())
    proc = run_cli("predict", out, *files, "--closed-set")
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split("\t") for ln in proc.stdout.strip().splitlines()]
    for cols, r in zip(rows, doc["predictions"]):  # the first four columns as before
        assert cols[:3] == [r["file"], r["device"], f"{r['probability']:.3f}"]
        assert cols[3].startswith("(runner-up ")
    assert rows[0][4] == "(16000 Hz)" and rows[1][4] == "(22050 Hz, resampled to 16000 Hz)"
    assert "1 of 2 file(s) resampled" in proc.stderr


def test_predict_answers_unknown_for_what_it_cannot_judge_and_goes_on_past_a_bad_file(trained, tmp_path):
    """Silence, a 0.1 s clip, an 8 kHz copy, a clipped file: 'unknown' and why; a corrupt
    file and a folder: 'error' on their own lines while the others are judged; exit 1."""
    out, _ = trained
    good = wav(tmp_path / "good.wav", 16000, seconds=1.0)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    short = wav(tmp_path / "short.wav", 16000, seconds=0.1)
    x, _ = sf.read(good)
    low = tmp_path / "copy8k.wav"
    sf.write(low, x[::2], 8000, subtype="PCM_16")
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(x * 40, -1, 1), 16000, subtype="PCM_16")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x01garbage, not audio")
    folder = tmp_path / "a_folder.wav"
    folder.mkdir()
    files = [good, silent, short, low, clipped, corrupt, folder, good]
    # white noise is no device the model knows: --closed-set keeps that reason out of these
    proc = run_cli("predict", out, *files, "--json", "--closed-set")
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    assert [r["status"] for r in rows] == ["ok", "unknown", "unknown", "unknown", "unknown", "error", "error", "ok"]
    assert rows[0]["device"] == rows[7]["device"] and rows[0]["probability"] == rows[7]["probability"]
    assert "silent" in rows[1]["reasons"][0]
    assert rows[2]["reasons"] == ["too short: 0.10 s (the model needs at least 0.50 s)"]
    assert "8000 Hz, below the model's 16000 Hz" in rows[3]["reasons"][0]
    assert any(r.startswith("clipped: ") for r in rows[4]["reasons"])
    assert "corrupt" in rows[5]["error"] and "directory" in rows[6]["error"]
    assert all(r["device"] is None for r in rows[1:5])
    assert "4 of 8 file(s) answered 'unknown'" in proc.stderr
    assert proc.stderr.count("devicepool: error: ") == 2 and "Traceback" not in proc.stderr
    text = run_cli("predict", out, *files, "--closed-set")
    lines = [ln.split("\t") for ln in text.stdout.strip().splitlines()]
    assert [c[1] for c in lines[1:7]] == ["unknown"] * 4 + ["error"] * 2 and len(lines) == 8
    assert lines[2][2] == "(too short: 0.10 s (the model needs at least 0.50 s))"
    # --strict stops at the first file that cannot be read; the thresholds are options
    one_line_error(run_cli("predict", out, good, corrupt, good, "--strict"))
    proc = run_cli("predict", out, short, low, "--min-seconds", "0.05", "--allow-lower-rate", "--json",
                   "--closed-set")
    assert proc.returncode == 0 and [r["status"] for r in json.loads(proc.stdout)["predictions"]] == ["ok", "ok"]


# ----------------------------------------------------------------------------- 8. workers


def test_sigterm_stops_the_n_jobs_workers(folder_corpus, tmp_path):
    psutil = pytest.importorskip("psutil")
    args = ["evaluate", *corpus_args(folder_corpus), "--models", "da_cnn", "--max-epochs", "500",
            "--n-jobs", "2", "--out", tmp_path / "eval", "--quiet"]
    with open(tmp_path / "stderr.txt", "wb") as err:  # not a pipe: orphans would hold it open
        proc = subprocess.Popen(cli(*args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    parent = psutil.Process(proc.pid)
    workers = []

    def loky_workers():
        found = []
        for w in parent.children(recursive=True):
            try:
                if "loky" in " ".join(w.cmdline()):
                    found.append(w)
            except psutil.Error:
                pass
        return found

    try:
        deadline = time.monotonic() + 300
        while len(loky_workers()) < 2:  # workers are children of the command
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2.0)  # the fits are running
        workers = parent.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        gone, alive = psutil.wait_procs(workers, timeout=10)
        alive = [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [(w.pid, w.cmdline()) for w in alive]
        assert "stopped by SIGTERM" in (tmp_path / "stderr.txt").read_text()
    finally:
        for w in workers:  # never leave a stray process behind, whatever failed
            try:
                w.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- 9. locked output


@pytest.fixture
def quick_model():
    from devicepool.protocol import register_model, unregister_model

    register_model("lr_rel", mean_frame_logreg, feature="fbank", label="LR")
    yield "lr_rel"
    unregister_model("lr_rel")


def _hold_lock(folder):
    """Hold the output folder's lock as another run would (flock on ``folder/.lock``)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_locked_output_folder_is_a_one_line_error_and_wait_waits(folder_corpus, tmp_path, quick_model,
                                                                   capsys):
    out = tmp_path / "eval"
    args = ["evaluate", *corpus_args(folder_corpus), "--models", quick_model, "--out", str(out)]
    fd = _hold_lock(out)
    try:
        assert main(args + ["--quiet"]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "in use by another run" in line and str(out) in line
    finally:
        os.close(fd)
    fd = _hold_lock(out)
    timer = threading.Timer(2.0, os.close, args=(fd,))  # the other run ends in 2 s
    timer.start()
    try:
        assert main(args + ["--wait"]) == 0
    finally:
        timer.join()
    captured = capsys.readouterr()
    assert "waiting for" in captured.err and "| LR |" in captured.out


def test_demo_has_wait_and_a_locked_folder_is_a_one_line_error(tmp_path, capsys):
    assert build_parser().parse_args(["demo", "--wait"]).wait is True
    fd = _hold_lock(tmp_path / "demo" / "ex1")
    try:
        assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    finally:
        os.close(fd)
    line = one_line_error(capsys.readouterr().err)
    assert "in use by another run" in line


# ----------------------------------------------------------------------------- help and docs


def test_help_states_the_pickle_risk_and_the_output_format(capsys):
    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-pickle" in text and "loading a pickle runs any code it contains" in text
    assert "only for files you wrote yourself" in text and "\\t, \\n and \\r" in text
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "model.pt" in text and "--sample-rate HZ" in text and ".joblib" not in text
    proc = subprocess.run([sys.executable, "-m", "devicepool.cli", "--version"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("devicepool ")


def test_warnings_print_as_one_devicepool_line(tmp_path, monkeypatch, capsys):
    def warn_then_stop(args):
        warnings.warn("first line\n  of a warning", UserWarning, stacklevel=2)
        warnings.warn("numbers may change", FutureWarning, stacklevel=2)
        raise commands.UsageError("stop here")

    monkeypatch.setattr(commands, "_load_corpus", warn_then_stop)
    assert main(["train", "--corpus", "demo", "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "devicepool: warning: first line of a warning" in err
    assert "devicepool: warning: numbers may change (FutureWarning)" in err
    assert not any("warnings.warn" in line or ".py:" in line for line in err)
    assert warnings.showwarning is not main.__globals__["_one_line_warning"]  # restored


def test_evaluate_mode_augmentation_takes_a_direction(capsys):
    def parse(*extra):
        return build_parser().parse_args(["evaluate", "--corpus", "demo", *extra])

    assert parse().mode_augmentation is False
    assert parse("--mode-augmentation").mode_augmentation == "both"
    assert parse("--mode-augmentation", "vocalise").mode_augmentation == "vocalise"
    assert main(["evaluate", "--corpus", "demo", "--mode-augmentation", "vocalize"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--mode-augmentation: invalid choice: 'vocalize'" in last
