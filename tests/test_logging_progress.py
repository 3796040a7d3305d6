"""Logging instead of prints, the command's --verbose/--debug/--device and usage errors,
messages without numpy reprs, progress bars where they can be read, the devicepool version
in model files and protocol results, type hints of the public API (issue 13 items 3, 4, 6)."""

import contextlib
import fcntl
import inspect
import io
import json
import logging
import os
import pty
import struct
import sys
import termios
import threading
import tokenize
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FOLDER_PATTERN, mean_frame_logreg, write_folder_corpus

import devicepool
from devicepool._progress import show_bars
from devicepool.cli import _commands as commands
from devicepool.cli import build_parser, main
from devicepool.datasets import load_audio_folder, load_mobiphone, make_device_corpus
from devicepool.estimators import DACNNClassifier
from devicepool.protocol.lock import output_lock

ROOT = Path(__file__).resolve().parents[1]
PATTERN = FOLDER_PATTERN


def make_utterances(n=24, n_classes=3, width=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = [(rng.normal(size=(int(rng.integers(12, 30)), width)) + 2.0 * c).astype(np.float32) for c in y]
    return X, np.array(["mic", "phone", "laptop"])[y]  # labels are np.str_ when taken one by one


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    b = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)
    return write_folder_corpus(tmp_path_factory.mktemp("corpus"), b)


def corpus_args(root):
    return ["--corpus", "folder", "--root", str(root), "--pattern", PATTERN]


# ----------------------------------------------------------------------------- logging


def _print_calls(path):
    """Line numbers of ``print(`` calls in a module (docstrings and comments excluded)."""
    with open(path, "rb") as fh:
        tokens = list(tokenize.tokenize(fh.readline))
    return [a.start[0] for a, b in zip(tokens, tokens[1:])
            if a.type == tokenize.NAME and a.string == "print" and b.string == "("]


def test_the_library_logs_and_never_prints():
    package = ROOT / "devicepool"
    found = {str(p.relative_to(ROOT)): _print_calls(p) for p in package.rglob("*.py")
             if "cli" not in p.relative_to(package).parts}
    assert {p: lines for p, lines in found.items() if lines} == {}


class _Release(logging.Handler):
    """Closes the held lock file when the waiting message is logged (the waiter then gets it)."""

    def __init__(self, release):
        super().__init__(logging.DEBUG)
        self.release = release

    def emit(self, record):
        if "waiting for" in record.getMessage():
            self.release()


@contextlib.contextmanager
def _held(folder, seconds=60.0):
    """Hold ``folder``'s lock as another run would, until a run logs that it waits for it
    (or ``seconds`` pass: a run that never waits, e.g. one whose records are filtered)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    once = threading.Lock()

    def release():
        if once.acquire(blocking=False):
            os.close(fd)

    timer = threading.Timer(seconds, release)
    handler = _Release(release)
    logger = logging.getLogger("devicepool.protocol.lock")
    logger.addHandler(handler)
    timer.start()
    try:
        yield
    finally:
        logger.removeHandler(handler)
        timer.cancel()
        release()


@pytest.mark.parametrize("notify, level", [(True, logging.WARNING), (False, logging.INFO)])
def test_the_waiting_message_is_a_log_record(tmp_path, caplog, capsys, notify, level):
    with caplog.at_level(logging.DEBUG, logger="devicepool"), _held(tmp_path):
        with output_lock(tmp_path, wait=True, notify=notify):
            pass
    [record] = [r for r in caplog.records if "waiting for" in r.getMessage()]
    assert record.name == "devicepool.protocol.lock" and record.levelno == level
    assert str(tmp_path) in record.getMessage() and "in use by another run" in record.getMessage()
    assert "waiting" not in capsys.readouterr().out


def test_verbose_and_debug_in_either_position(capsys):
    parse = build_parser().parse_args
    for argv, verbose, debug in ((["predict", "m.pt", "a.wav"], False, False),
                                 (["-v", "predict", "m.pt", "a.wav"], True, False),
                                 (["predict", "m.pt", "a.wav", "--verbose"], True, False),
                                 (["--debug", "train", "--corpus", "demo", "-o", "m.pt"], False, True),
                                 (["train", "--corpus", "demo", "-o", "m.pt", "--debug"], False, True)):
        args = parse(argv)
        assert (args.verbose, args.debug) == (verbose, debug), argv
    for command in ("demo", "evaluate", "train", "predict", "calibrate", "compare"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "-v, --verbose" in text and "--debug" in text, command


def test_verbose_shows_the_librarys_log_and_leaves_the_logger_as_it_was(folder_corpus, tmp_path,
                                                                      capsys, quick_model):
    logger = logging.getLogger("devicepool")
    handlers, level = list(logger.handlers), logger.level
    args = ["evaluate", *corpus_args(folder_corpus), "--models", quick_model, "--out", str(tmp_path)]
    assert main(args + ["--quiet"]) == 0
    assert "devicepool: " not in capsys.readouterr().err  # WARNING: nothing to say
    assert main(args + ["--quiet", "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "devicepool: 6 fits (lr_log; 3 folds), 6 finished in" in err, err
    assert logger.handlers == handlers and logger.level == level


def test_a_waiting_run_says_so_by_default_and_not_with_quiet(folder_corpus, tmp_path, capsys, quick_model):
    args = ["evaluate", *corpus_args(folder_corpus), "--models", quick_model, "--out", str(tmp_path)]
    for extra, shown in (([], True), (["--quiet"], False)):
        with _held(tmp_path, seconds=60 if shown else 2):  # --quiet: no record to release it
            assert main(args + ["--wait"] + extra) == 0
        err = capsys.readouterr().err
        assert ("devicepool: waiting for" in err) is shown, err


def test_debug_prints_the_traceback_instead_of_one_line(tmp_path, capsys):
    argv = ["predict", str(tmp_path / "none.pt"), "a.wav"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"devicepool: error: model file '{tmp_path / 'none.pt'}' does not exist\n"
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "UsageError: model file" in err


@pytest.mark.parametrize("argv, command", [
    (["predict", "m.pt", "a.wav", "--bogus"], "predict"),
    (["evaluate", "--corpus", "demo", "--n-splits", "x"], "evaluate"),
    (["train", "--corpus", "demo"], "train"),
    (["calibrate", "--model", "m.pt", "--corpus", "demo", "-o", "c.pt", "--scoring", "x"], "calibrate"),
])
def test_a_bad_flag_prints_the_subcommands_usage(argv, command, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: devicepool {command} ")
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("devicepool: error: ") and last.endswith(f"(see 'devicepool {command} --help')")
    assert "Traceback" not in err


def test_a_bad_command_prints_the_commands_usage(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: devicepool [-h]") and err.rstrip().endswith("(see 'devicepool --help')")


@pytest.mark.parametrize("device, words", [
    ("cuda", "is a CPU-only build"), ("cuda:1", "is a CPU-only build"), ("gpu", "is not a torch device"),
    ("CUDA", "is not a torch device"), ("cuda:x", "is not a torch device"),
])
def test_device_is_checked_before_any_work(device, words, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)

    def never(args):
        raise AssertionError("the corpus was loaded")

    monkeypatch.setattr(commands, "_load_corpus", never)
    for argv in (["train", "--corpus", "demo", "-o", str(tmp_path / "m.pt")],
                 ["evaluate", "--corpus", "demo", "--out", str(tmp_path / "eval")],
                 ["evaluate", "--corpus", "demo", "--forensic", "--out", str(tmp_path / "f")]):
        assert main(argv + ["--device", device]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("devicepool: error: --device ") and words in err, err
    assert not (tmp_path / "eval").exists() and not (tmp_path / "m.pt").exists()


def test_device_cpu_passes_the_check():
    from devicepool.cli._common import check_device

    assert check_device("cpu") == torch.device("cpu")


# ----------------------------------------------------------------------------- numpy reprs


def _messages(*excinfos):
    return [str(e.value) for e in excinfos]


def test_no_numpy_repr_in_label_bearing_messages(tmp_path):
    X, y = make_utterances()
    clf = DACNNClassifier(max_epochs=1, random_state=0).fit(X, y)
    texts = []
    with pytest.raises(ValueError) as e1:
        clf.score(X[:3], np.array(["zzz", "mic", "yyy"]))
    with pytest.raises(ValueError) as e2:
        DACNNClassifier(class_weight={np.str_("nope"): 2.0, "mic": 1.0}).fit(X, y)
    with pytest.raises(ValueError) as e3:
        DACNNClassifier().fit(X, np.full(len(X), "mic"))
    with pytest.raises(ValueError) as e4:
        DACNNClassifier(classes=np.array(["mic", "phone"])).fit(X, y)
    texts += _messages(e1, e2, e3, e4)
    assert "'zzz'" in texts[0] and "'laptop'" in texts[0]
    assert "'nope'" in texts[1] and "'mic'" in texts[2] and "'laptop'" in texts[3]
    texts += _loader_messages(tmp_path)
    for text in texts:
        assert "np." not in text and "dtype" not in text, text


def _tone_file(path, n=2):
    tone = 0.3 * np.sin(np.arange(16000) * 0.2)
    x = np.concatenate([np.zeros(8000)] + [np.concatenate([tone, np.zeros(8000)])] * n)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, 16000)


def _loader_messages(tmp_path):
    """The corpus loaders' messages naming devices (a missing device, speakers that
    differ across phones, duplicate device names) and modes."""
    root = tmp_path / "mobiphone"
    _tone_file(root / "phone A" / "speaker1.wav")
    _tone_file(root / "phone A" / "speaker2.wav")
    _tone_file(root / "phone B" / "speaker1.wav")
    with pytest.raises(ValueError) as e1:
        load_audio_folder(root, "{device}/{speaker}.wav", devices=np.array(["phone A", "phone C"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_mobiphone(root, n_utterances_per_file=2, phones=np.array(["phone A", "phone B"]))
    [differ] = [str(w.message) for w in caught if "differ across phones" in str(w.message)]
    assert "'phone B' lacks ['speaker2']" in differ, differ
    from devicepool.datasets import DEFAULT_DEVICES

    with pytest.raises(ValueError) as e2:
        make_device_corpus(devices=[DEFAULT_DEVICES[0], DEFAULT_DEVICES[0]])
    with pytest.raises(ValueError, match="unknown speaking mode 'shout'") as e3:
        make_device_corpus(modes=np.array(["neutral", "shout"]))
    return [str(e1.value), differ, str(e2.value), str(e3.value)]


# ----------------------------------------------------------------------------- progress


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_bars_only_where_they_can_be_read(monkeypatch):
    assert show_bars(True, _Stream(True)) and not show_bars(False, _Stream(True))
    assert not show_bars(True, _Stream(False)) and not show_bars(True, object())
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert not show_bars(True, closed)

    class Shell:  # a Jupyter kernel: tqdm.auto draws widgets, whatever stderr is
        config = {"IPKernelApp": {}}

    class IPython:
        get_ipython = staticmethod(Shell)

    monkeypatch.setitem(sys.modules, "IPython", IPython)
    assert show_bars(True, _Stream(False))


def _fit_with_stderr(stream, monkeypatch):
    monkeypatch.setattr(sys, "stderr", stream)
    X, y = make_utterances(12)
    DACNNClassifier(max_epochs=2, random_state=0, progress=True).fit(X, y)
    stream.flush()


def test_the_epoch_bar_shows_on_a_terminal_only(monkeypatch):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0 x 0: no bar
    try:
        with os.fdopen(slave, "w") as terminal:
            _fit_with_stderr(terminal, monkeypatch)
            monkeypatch.undo()
            os.set_blocking(master, False)
            shown = os.read(master, 1 << 16).decode("utf-8", "replace")
    finally:
        os.close(master)
    assert "DACNNClassifier" in shown and "epoch" in shown, shown
    assert "\n" in shown.replace("\r\n", "\n").rstrip("\r ")  # the bar stays when training ends
    log = _Stream(False)  # a log file: plain lines, no carriage returns or colours
    _fit_with_stderr(log, monkeypatch)
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("DACNNClassifier: epoch 2/2, train_loss ")
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_verbose_epoch_table_has_colours_on_a_terminal_only(capsys):
    X, y = make_utterances(12)
    DACNNClassifier(max_epochs=3, valid_fraction=0.3, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr().out  # not a terminal
    assert "train_loss" in out and "valid_acc" in out and "\x1b[" not in out


def test_parallel_fits_have_no_epoch_bars():
    """With n_jobs the engine runs the fits without their own bars (threading backend: the
    tasks reach the fit function in this process)."""
    from joblib import parallel_backend

    from devicepool.protocol import get_model
    from devicepool.protocol.engine import run_fits
    from devicepool.protocol.runner import FitTask

    seen = []

    def fit(task, data):
        seen.append(task)
        return [], None

    spec = get_model("da_cnn")
    tasks = [FitTask("da_cnn", spec, "neutral", k, ("N",), k, {}, 0, "key", progress=True) for k in range(2)]
    with parallel_backend("threading"):
        assert len(list(run_fits(tasks, fit, {"fbank": None}, n_jobs=2))) == 2
    assert [t.progress for t in seen] == [False, False]
    for n_jobs in (None, 1):  # one after the other: each fit's own bar
        list(run_fits(tasks, fit, {"fbank": None}, n_jobs=n_jobs))
    assert [t.progress for t in seen[2:]] == [True] * 4


def test_run_protocol_in_parallel_shows_no_epoch_bars_and_records_the_version(tmp_path, capfd):
    from devicepool.protocol import run_protocol

    corpus = make_device_corpus(n_devices=2, n_speakers=4, n_utterances=2, modes=("neutral",), random_state=0)
    res = run_protocol(corpus, models=["da_cnn"], n_splits=2, out_dir=tmp_path, n_jobs=2, progress=True,
                       model_params={"da_cnn": {"max_epochs": 1, "max_steps": 2}}, report=False)
    err = capfd.readouterr().err
    assert "epoch" not in err and "DACNNClassifier" not in err, err
    assert [r["devicepool_version"] for r in res.records] == [devicepool.__version__] * 2
    saved = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("fold*.json"))]
    assert [r["devicepool_version"] for r in saved] == [devicepool.__version__] * 2


# ----------------------------------------------------------------------------- versions, hints


@pytest.fixture(scope="module")
def trained_model(folder_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.pt"
    assert main(["train", *corpus_args(folder_corpus), "--max-epochs", "1", "-o", str(out), "--quiet"]) == 0
    return out


def test_model_files_record_the_devicepool_version(trained_model, folder_corpus, tmp_path, capsys):
    payload = torch.load(trained_model, weights_only=True)
    assert payload["devicepool_version"] == devicepool.__version__
    wav = str(next(folder_corpus.rglob("*.wav")))
    assert main(["predict", str(trained_model), wav, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_devicepool_version"] == devicepool.__version__
    del payload["devicepool_version"]  # a file of a devicepool that did not record it
    torch.save(payload, tmp_path / "old.pt")
    assert main(["predict", str(tmp_path / "old.pt"), wav, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model_devicepool_version"] is None and len(doc["predictions"]) == 1


def test_calibrated_model_files_record_the_version(trained_model, folder_corpus, tmp_path, capsys):
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", "--model", str(trained_model), *corpus_args(folder_corpus),
                 "--scoring", "cosine", "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert torch.load(out, weights_only=True)["devicepool_version"] == devicepool.__version__


def test_the_public_api_has_type_hints():
    from devicepool import FilterBank, make_device_corpus, run_protocol
    from devicepool.audio import load_audio
    from devicepool.features import DFTMagnitude
    from devicepool.forensic import DeviceLR
    from devicepool.protocol import register_model

    functions = [FilterBank.__init__, FilterBank.transform, DFTMagnitude.__init__, run_protocol,
                 register_model, load_audio, make_device_corpus, DeviceLR.fit, DeviceLR.predict_llr]
    functions += [getattr(DACNNClassifier, name) for name in
                  ("fit", "predict", "predict_proba", "transform", "predict_outputs", "save", "load")]
    for func in functions:
        sig = inspect.signature(func)
        assert sig.return_annotation is not inspect.Signature.empty, func
        for name, p in sig.parameters.items():
            if name not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                assert p.annotation is not inspect.Parameter.empty, (func, name)
    assert (ROOT / "devicepool" / "py.typed").exists()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def quick_model():
    from devicepool.protocol import register_model, unregister_model

    register_model("lr_log", mean_frame_logreg, feature="fbank", label="LR")
    yield "lr_log"
    unregister_model("lr_log")
