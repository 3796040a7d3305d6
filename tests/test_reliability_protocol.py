"""Reliability of the protocol's output folder (issue 11): keys from the audio's content,
one writer at a time, damaged files recomputed with a warning naming them, the umask
honoured, and Ctrl-C losing only the fit in progress."""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from devicepool._io import atomic_write_bytes
from devicepool.datasets import make_device_corpus
from devicepool.protocol import (
    OutputLockedError,
    get_model,
    load_results,
    register_model,
    run_protocol,
    unregister_model,
    write_report,
)
from devicepool.protocol import keys as keys_module
from devicepool.protocol.lock import output_lock
from devicepool.protocol.records import read_record

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
QUIET = dict(progress=False, report=False)



def _sigint_default():
    """In the child: Ctrl-C raises KeyboardInterrupt even when this test run was started
    with SIGINT ignored (a background job of a non-interactive shell inherits SIG_IGN,
    and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _mean_frame(X):
    return np.stack([u.mean(0) for u in X])


def _lr(random_state=None, **params):
    return make_pipeline(FunctionTransformer(_mean_frame), LogisticRegression(max_iter=300))


class AttentionMean(ClassifierMixin, BaseEstimator):
    """Nearest class mean of the mean frame, with uniform attention (Fig. 2 files)."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        m = _mean_frame(X)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([m[np.asarray(y) == c].mean(0) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((_mean_frame(X)[:, None, :] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[d.argmin(1)]

    def attention_weights(self, X):
        return {"time": [np.full(-(-len(u) // 4), 0.5, np.float32) for u in X],
                "band": np.ones((len(X), X[0].shape[1]), np.float32)}


@pytest.fixture
def lr_model():
    register_model("rel_lr", _lr)
    yield "rel_lr"
    unregister_model("rel_lr")


@pytest.fixture
def attention_model():
    register_model("rel_attn", AttentionMean, attention=True)
    yield "rel_attn"
    unregister_model("rel_attn")


@pytest.fixture(scope="module")
def corpus():
    # 3 devices x 3 speakers x 2 utterances, neutral only: condition MOBI, 3 fits
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, modes=("neutral",),
                              random_state=0)


def _wav_corpus(folder, n_samples=4000, seed=0):
    """A folder corpus of 16-bit WAV files: 3 devices x 3 speakers x 2 utterances."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, devices, speakers = [], [], []
    for d in range(3):
        for s in range(3):
            for u in range(2):
                path = folder / f"dev{d}-spk{s}-utt{u}.wav"
                tone = np.sin(2 * np.pi * (300 + 700 * d) * np.arange(n_samples) / 16000)
                sf.write(path, 0.3 * tone + 0.05 * rng.standard_normal(n_samples), 16000,
                         subtype="PCM_16")
                paths.append(str(path))
                devices.append(f"dev{d}")
                speakers.append(f"spk{s}")
    return {"data": paths, "target": devices, "groups": speakers, "sample_rate": 16000}


def _files(folder, pattern="*"):
    return {f: f.read_bytes() for f in sorted(Path(folder).rglob(pattern)) if f.is_file()}


def _temps(folder):
    return [f for f in Path(folder).rglob("*.tmp")]


# ----------------------------------------------------------------------------- item 2: keys by content


def test_rewritten_audio_is_never_reused(tmp_path, lr_model):
    corpus = _wav_corpus(tmp_path / "audio")
    out = tmp_path / "out"
    run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
    results, caches = _files(out / "results"), set((out / "cache").glob("features-*.npz"))
    assert len(results) == 3 and len(caches) == 1
    # rewrite one recording in place: other samples, same length, so the same size on
    # disk; and set its modification time back, as a copy tool keeping times would
    path = corpus["data"][0]
    before = os.stat(path)
    with sf.SoundFile(path, "r+") as f:
        f.seek(0)
        f.write(np.random.default_rng(7).uniform(-0.5, 0.5, f.frames))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns,
                                                                before.st_ino)
    # the folder now holds results of other settings: refused, nothing touched
    with pytest.raises(ValueError, match="holds results of other settings"):
        run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
    assert _files(out / "results") == results
    # resume=False recomputes: from new features (a new cache file), under a new key
    res = run_protocol(corpus, models=[lr_model], out_dir=out, resume=False, **QUIET)
    new_caches = set((out / "cache").glob("features-*.npz"))
    assert len(new_caches - caches) == 1
    old_keys = {json.loads(b)["config_key"] for b in results.values()}
    new_keys = {json.loads(f.read_bytes())["config_key"] for f in results}
    assert len(old_keys) == len(new_keys) == 1 and old_keys != new_keys
    scratch = run_protocol(corpus, models=[lr_model], **QUIET)  # no folder: nothing reused
    assert [r["y_pred"] for r in res.records] == [r["y_pred"] for r in scratch.records]


def test_resume_false_replaces_fig2_files_of_other_settings(tmp_path, corpus, attention_model):
    out = tmp_path / "out"
    run_protocol(corpus, models=[attention_model], out_dir=out, random_state=0, **QUIET)
    res = run_protocol(corpus, models=[attention_model], out_dir=out, random_state=1, resume=False,
                       **QUIET)
    (key,) = {r["config_key"] for r in res.records}
    files = sorted((out / "results" / attention_model).glob("attention-*.npz"))
    assert len(files) == 3
    for f in files:
        with np.load(f) as z:
            assert str(z["config_key"]) == key, f


def test_file_digest_sees_a_rewrite_with_same_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setattr(keys_module, "_SETTLED_NS", -1)  # remember every digest
    monkeypatch.setattr(keys_module, "_FILE_DIGESTS", {})
    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 4096)
    first = keys_module._file_digest(path)
    assert keys_module._file_digest(path) == first and len(keys_module._FILE_DIGESTS) == 1
    st = os.stat(path)
    time.sleep(0.05)  # past the file system's timestamp tick
    with open(path, "r+b") as fh:
        fh.write(b"b")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert keys_module._file_digest(path) != first
    # the digest of the content, wherever the file lies
    copy = tmp_path / "b.bin"
    shutil.copyfile(path, copy)
    assert keys_module._file_digest(copy) == keys_module._file_digest(path)


# ----------------------------------------------------------------------------- item 5: one writer


HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from devicepool.protocol.lock import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _hold_in_subprocess(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(folder)], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_fails_at_once_and_a_killed_holder_never_blocks(tmp_path, corpus, lr_model):
    out = tmp_path / "out"
    proc = _hold_in_subprocess(out)
    try:
        t0 = time.monotonic()
        with pytest.raises(OutputLockedError, match=rf"{re.escape(repr(str(out)))} is in use by another "
                                                    rf"run \(pid {proc.pid} on host .+, started "):
            run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
        assert time.monotonic() - t0 < 30
        assert issubclass(OutputLockedError, RuntimeError)
        assert not (out / "results").exists() and not (out / "cache").exists()
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid}"):
            write_report(run_protocol(corpus, models=[lr_model], **QUIET), out)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the dead holder's lock file is still there, naming it: it must not block
    assert f'"pid": {proc.pid}' in (out / ".lock").read_text()
    res = run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
    assert len(res.records) == 3
    assert (out / ".lock").read_text() == ""  # released, holder text cleared


def test_wait_true_waits_for_the_holder(tmp_path, corpus, lr_model):
    out = tmp_path / "out"
    held, release_at = threading.Event(), []

    def hold():
        with output_lock(out):
            held.set()
            time.sleep(1.5)
            release_at.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(OutputLockedError):  # another open file: refused in-process too
            run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
        res = run_protocol(corpus, models=[lr_model], out_dir=out, wait=True, **QUIET)
        done = time.monotonic()
    finally:
        holder.join()
    assert len(res.records) == 3 and release_at and done >= release_at[0]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_fit_writes_nothing_and_releases_the_lock(tmp_path, corpus, error):
    calls = []

    def failing(random_state=None, **params):
        calls.append(1)
        if len(calls) == 2:  # the second fit (fold 1) dies
            return make_pipeline(FunctionTransformer(_raise(error)), LogisticRegression())
        return _lr()

    out = tmp_path / "out"
    register_model("rel_failing", failing)
    try:
        with pytest.raises(error):
            run_protocol(corpus, models=["rel_failing"], out_dir=out, **QUIET)
        with output_lock(out):  # free again
            pass
        folds = out / "results" / "rel_failing" / "MOBI"
        assert sorted(f.name for f in folds.iterdir()) == ["fold0.json"] and not _temps(out)
        kept = _files(folds)
        res = run_protocol(corpus, models=["rel_failing"], out_dir=out, **QUIET)
    finally:
        unregister_model("rel_failing")
    assert len(res.records) == 3 and len(calls) == 4  # only the two unfinished fits ran
    assert {f: b for f, b in _files(folds).items() if f in kept} == kept


def _raise(error):
    def transform(X):
        raise error("a fit dies")

    return transform


INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from devicepool.datasets import make_device_corpus
    from devicepool.protocol import register_model, run_protocol
    from devicepool.protocol.lock import output_lock

    out, log = sys.argv[1], sys.argv[2]
    calls = []

    class Slow(LogisticRegression):
        def fit(self, X, y):
            calls.append(1)
            with open(log, "a") as fh:
                fh.write(f"start {len(calls)}\\n")
            if len(calls) == 2:
                time.sleep(600)  # the fit in progress when Ctrl-C comes
            return super().fit(X, y)

    mean = FunctionTransformer(lambda X: np.stack([u.mean(0) for u in X]))
    register_model("rel_lr", lambda random_state=None, **p: make_pipeline(mean, Slow(max_iter=300)))
    corpus = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, modes=("neutral",),
                                random_state=0)
    try:
        run_protocol(corpus, models=["rel_lr"], out_dir=out, progress=False, report=False)
    except KeyboardInterrupt:
        with output_lock(out):  # raises OutputLockedError if the run still held it
            print("interrupted; lock released", flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_loses_only_the_fit_in_progress(tmp_path, corpus, lr_model):
    out, log = tmp_path / "out", tmp_path / "fits.log"
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT, str(out), str(log)], env=ENV,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)
    deadline = time.monotonic() + 300
    try:
        while not (log.exists() and "start 2" in log.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the second fit never started"
            time.sleep(0.05)
        folds = out / "results" / lr_model / "MOBI"
        assert (folds / "fold0.json").is_file()  # the first result is there
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "lock released" in stdout
    assert sorted(f.name for f in folds.iterdir()) == ["fold0.json"]  # fold 1: in progress
    assert not _temps(out)
    kept = (folds / "fold0.json").read_bytes()
    # the rerun (same model name and parameters, same corpus: same settings) redoes the rest
    res = run_protocol(corpus, models=[lr_model], out_dir=out, **QUIET)
    assert len(res.records) == 3 and (folds / "fold0.json").read_bytes() == kept


# ----------------------------------------------------------------------------- item 6: damaged files


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_key(path):
    rec = json.loads(path.read_text())
    del rec["accuracy"]
    path.write_text(json.dumps(rec))


def _bad_lengths(path):
    with np.load(path) as z:
        arrays = dict(z)
    arrays["lengths"] = arrays["lengths"] + 1
    np.savez(path.with_suffix(""), **arrays)  # np.savez appends .npz


DAMAGE = {
    "result-empty-list": ("results/rel_attn/MOBI/fold1.json", lambda p: p.write_text("[]")),
    "result-lacks-a-key": ("results/rel_attn/MOBI/fold1.json", _drop_key),
    "result-truncated": ("results/rel_attn/MOBI/fold1.json", _truncate),
    "attention-truncated": ("results/rel_attn/attention-neutral-fold1.npz", _truncate),
    "features-truncated": ("cache/features-fbank-*.npz", _truncate),
    "features-bad-lengths": ("cache/features-fbank-*.npz", _bad_lengths),
    "voicing-truncated": ("cache/voicing-*.npz", _truncate),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpus):
    """A finished folder of the attention model (results, Fig. 2 files, both caches)."""
    out = tmp_path_factory.mktemp("finished")
    register_model("rel_attn", AttentionMean, attention=True)
    try:
        res = run_protocol(corpus, models=["rel_attn"], out_dir=out, **QUIET)
    finally:
        unregister_model("rel_attn")
    return out, res


def _damaged_copy(finished, tmp_path, kind):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    pattern, damage = DAMAGE[kind]
    (path,) = out.glob(pattern)
    damage(path)
    return out, path


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_file_is_recomputed_with_a_warning(finished, corpus, tmp_path, kind, attention_model):
    out, path = _damaged_copy(finished, tmp_path, kind)
    if path.parent.name == "cache":  # features are read when a fit runs: lose one result
        (out / "results/rel_attn/MOBI/fold2.json").unlink()
    untouched = {f: b for f, b in _files(out / "results").items() if f != path}
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: corrupt .*; recomputing it"):
        res = run_protocol(corpus, models=[attention_model], out_dir=out, **QUIET)
    assert [r["y_pred"] for r in res.records] == [r["y_pred"] for r in finished[1].records]
    assert {f: b for f, b in _files(out / "results").items() if f in untouched} == untouched
    if path.suffix == ".json":  # replaced by a sound record
        assert read_record(path, ("rel_attn", "MOBI", 1))["config_key"] == res.records[1]["config_key"]
    else:
        with np.load(path) as z:
            assert all(z[k].size for k in z.files)
    assert not _temps(out)
    # and the repaired folder reads back quietly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_results(out).records) == 3


@pytest.mark.parametrize("kind", ["result-empty-list", "result-lacks-a-key", "result-truncated",
                                  "attention-truncated"])
def test_load_results_skips_a_damaged_file_with_a_warning(finished, tmp_path, kind):
    out, path = _damaged_copy(finished, tmp_path, kind)
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: corrupt .*; skipped"):
        res = load_results(out)
    if path.suffix == ".json":
        assert len(res.records) == 2 and res.summary[("rel_attn", "MOBI")]["n_folds"] == 2
    else:
        assert len(res.records) == 3
        assert len(res.attention["neutral"]["time_weights"]) == 12  # two folds of six


def test_a_killed_runs_temporary_files_are_removed(finished, corpus, tmp_path, attention_model):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    left = [out / "results/rel_attn/MOBI/.fold0.json.a1b2c3d4.tmp",
            out / "cache/.features-fbank-0123.npz.x_Y9z8W7.tmp", out / ".report.md.abcdefgh.tmp"]
    for f in left:
        f.write_bytes(b"half")
    mine = out / "results" / "notes.tmp"
    mine.write_text("not ours")
    run_protocol(corpus, models=[attention_model], out_dir=out, **QUIET)
    assert not any(f.exists() for f in left) and mine.exists()


# ----------------------------------------------------------------------------- item 7: umask


def _modes(folder):
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
            for p in [Path(folder), *Path(folder).rglob("*")]}


def test_every_file_of_a_run_honours_the_umask(tmp_path, corpus, attention_model):
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        run_protocol(corpus, models=[attention_model], out_dir=out, progress=False, report=True)
    finally:
        os.umask(old)
    modes = _modes(out)
    files = {p: m for p, m in modes.items() if (out / p).is_file()}
    dirs = {p: m for p, m in modes.items() if (out / p).is_dir()}
    assert set(files.values()) == {0o644}, files
    assert set(dirs.values()) == {0o755}, dirs
    assert {"report.md", "table3.csv", "folds.csv", "protocol.json", ".lock"} <= set(files)
    assert any(p.endswith(".npz") for p in files) and any(p.endswith(".json") for p in files)
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the report has no figures
        return
    assert any(p.endswith(".png") for p in files)


@pytest.mark.parametrize("umask, mode", [(0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "sub" / "x.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub" / "x.bin").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o777 & ~umask


def test_the_stores_answer_alike(finished, attention_model):
    """A folder's ResultStore and a MemoryStore holding the same fits give the same
    records and Fig. 2 data; the folder says every planned fit is done."""
    from devicepool.protocol.fitting import FitTask
    from devicepool.protocol.store import MemoryStore, ResultStore

    def texts(records):
        return sorted(json.dumps(r, sort_keys=True) for r in records)

    out, res = finished
    disk, memory = ResultStore(out), MemoryStore()
    records, parts = disk.load_all()
    assert texts(records) == texts(res.records)
    for r in res.records:
        task = disk.locate(FitTask(attention_model, get_model(attention_model), r["train_mode"], r["fold"],
                                   (r["condition"],), r["seed"], {}, 0, r["config_key"]))
        assert disk.status(task) == ("done", None) and memory.status(task) == ("todo", None)
        memory.write(task, *disk.read(task))
        assert memory.status(task) == ("done", None) and memory.read(task)[0] == [r]
    mem_records, mem_parts = memory.load_all()
    assert texts(mem_records) == texts(records) and set(mem_parts) == set(parts) == {"neutral"}
    assert [p.utterance_index.tolist() for p in mem_parts["neutral"]] == [
        p.utterance_index.tolist() for p in parts["neutral"]]


def test_a_changed_library_default_is_another_setting(tmp_path, corpus):
    # a folder written with one default of a registered template (here: the module's
    # utterance_norm, which no parameter given names) is not resumed under another
    from sklearn.pipeline import Pipeline

    from devicepool.estimators import SACNNClassifier
    from devicepool.features import FilterBank
    from devicepool.protocol.keys import model_recipe

    a = Pipeline([("features", FilterBank()), ("clf", SACNNClassifier())])
    b = Pipeline([("features", FilterBank()), ("clf", SACNNClassifier(module__utterance_norm=0))])
    assert ("clf.module.utterance_norm", "2") in model_recipe(a)
    assert model_recipe(a) != model_recipe(b)
    assert model_recipe(a) == model_recipe(Pipeline([("features", FilterBank()), ("clf", SACNNClassifier())]))

    out = tmp_path / "out"
    step = Pipeline([("features", FilterBank()), ("clf", _MeanFrameLR(C=1.0))])
    register_model("rel_recipe", step)
    try:
        first = run_protocol(corpus, models=["rel_recipe"], out_dir=out, **QUIET)
        again = run_protocol(corpus, models=["rel_recipe"], out_dir=out, **QUIET)  # resumed
        assert [r["config_key"] for r in again.records] == [r["config_key"] for r in first.records]
    finally:
        unregister_model("rel_recipe")
    register_model("rel_recipe", Pipeline([("features", FilterBank()), ("clf", _MeanFrameLR(C=0.5))]))
    try:
        with pytest.raises(ValueError, match="holds results of other settings"):
            run_protocol(corpus, models=["rel_recipe"], out_dir=out, **QUIET)
    finally:
        unregister_model("rel_recipe")


class _MeanFrameLR(ClassifierMixin, BaseEstimator):
    """Logistic regression on each utterance's mean frame (a template's last step)."""

    def __init__(self, C=1.0, random_state=None):
        self.C, self.random_state = C, random_state

    def fit(self, X, y):
        self.lr_ = LogisticRegression(C=self.C, max_iter=300).fit(_mean_frame(X), y)
        self.classes_ = self.lr_.classes_
        return self

    def predict(self, X):
        return self.lr_.predict(_mean_frame(X))
