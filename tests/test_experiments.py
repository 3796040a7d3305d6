"""The protocol runner: folds, conditions, resume after a kill, reproducibility, report."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import mean_frame

import devicepool
from devicepool.datasets import make_device_corpus
from devicepool.protocol import (
    CONDITIONS,
    available_conditions,
    combine_results,
    get_model,
    load_results,
    make_folds,
    register_model,
    run_protocol,
    unregister_model,
)
from devicepool.protocol.conditions import seed_for

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 2, "batch_size": 8}
FAST_PARAMS = {m: dict(FAST) for m in ("dft_cnn", "sa_cnn", "da_cnn")}
FAST_PARAMS["dft_cnn"]["module__channels"] = (8, 16)  # the full DFT-CNN is slow on 2 cores


@pytest.fixture(scope="module")
def corpus():
    # real embedded corpus, tiny: 3 devices x 3 speakers x 2 utterances x 2 modes
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)


@pytest.fixture(scope="module")
def neutral_corpus():
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, modes=("neutral",),
                              random_state=1)


class _CountingFactory:
    """Wrap a registered model's real factory and count the fits it is asked for."""

    def __init__(self, name):
        self.spec = get_model(name)
        self.calls = 0

    def __call__(self, **params):
        self.calls += 1
        return self.spec.factory(**params)


@pytest.fixture
def counted_da():
    counter = _CountingFactory("da_cnn")
    register_model("da_counted", counter, feature="fbank", label="DA-CNN (counted)", attention=True)
    yield counter
    unregister_model("da_counted")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("protocol")
    res = run_protocol(corpus, out_dir=out, model_params=FAST_PARAMS, progress=False)
    return out, res


# ----------------------------------------------------------------------------- folds


def test_folds_are_speaker_disjoint_and_shared_by_modes(corpus):
    folds = make_folds(corpus.groups, 3)
    groups = np.asarray(corpus.groups)
    mode = np.asarray(corpus.mode)
    assert len(folds) == 3
    # every utterance is held out exactly once
    assert np.array_equal(np.sum(folds, axis=0), np.ones(len(groups)))
    for held in folds:
        assert not set(groups[held]) & set(groups[~held])
        # the same held-out speakers in both modes (N/W tests the other mode of them)
        assert set(groups[held & (mode == "neutral")]) == set(groups[held & (mode == "whisper")])


def test_folds_need_enough_speakers():
    with pytest.raises(ValueError, match="at least 3 speakers"):
        make_folds(["a", "a", "b"], 3)
    with pytest.raises(ValueError, match="n_splits"):
        make_folds(["a", "b"], 1)


def test_available_conditions():
    assert available_conditions(["neutral", "whisper"]) == ["N", "W", "N/W", "W/N"]
    assert available_conditions(["neutral"]) == ["MOBI"]
    assert available_conditions(["whisper"]) == ["W"]
    assert set(CONDITIONS) == {"MOBI", "N", "W", "N/W", "W/N"}


# ----------------------------------------------------------------------------- the protocol


def test_full_protocol_all_models_all_conditions(full_run, corpus):
    out, res = full_run
    assert res.models == ["dft_cnn", "sa_cnn", "da_cnn"]
    assert res.conditions == ["N", "W", "N/W", "W/N"]
    assert len(res.records) == 3 * 4 * 3
    mode = np.asarray(corpus.mode)
    groups = np.asarray(corpus.groups)
    for rec in res.records:
        assert 0.0 <= rec["accuracy"] <= 1.0
        cm = np.asarray(rec["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == rec["n_test"]
        assert rec["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        idx = np.asarray(rec["test_index"])
        assert set(mode[idx]) == {rec["test_mode"]}
        assert not set(groups[idx]) & set(rec["train_speakers"])
        assert Path(out, "results", rec["model"], rec["condition"].replace("/", "-"),
                    f"fold{rec['fold']}.json").is_file()
    for (m, c), s in res.summary.items():
        accs = [100 * r["accuracy"] for r in res.records if r["model"] == m and r["condition"] == c]
        assert s["n_folds"] == 3
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs))
        assert res.confusion[(m, c)]["matrix"].sum() == sum(
            r["n_test"] for r in res.records if r["model"] == m and r["condition"] == c)
    # matched and mismatched conditions of one training mode share the fit (same seed, fit time)
    for m in res.models:
        for k in range(3):
            n = [r for r in res.records if r["model"] == m and r["fold"] == k and r["train_mode"] == "neutral"]
            assert {r["condition"] for r in n} == {"N", "N/W"}
            assert n[0]["seed"] == n[1]["seed"] and n[0]["fit_seconds"] == n[1]["fit_seconds"]


def test_report_files_and_figure_data(full_run):
    out, res = full_run
    for name in ("report.md", "table3.md", "table3.csv", "folds.csv", "confusion_matrices.json",
                 "fig2a-band-weights.png", "fig2b-time-weights-neutral.png",
                 "fig2c-time-weights-whisper.png", "confusion-da_cnn-N-W.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 200, name
    report = (out / "report.md").read_text()
    assert "| DA-CNN |" in report and "(99.12)" in report and "fig2a-band-weights.png" in report
    table = (out / "table3.csv").read_text().splitlines()
    assert table[0].startswith("model,N mean,N std") and len(table) == 4
    # Fig. 2 data: DA-CNN band weights (24 per utterance) and time weights aligned with labels
    for train_mode in ("neutral", "whisper"):
        att = res.attention[train_mode]
        n_held = sum(r["n_test"] for r in res.records
                     if r["model"] == "da_cnn" and r["condition"] == ("N" if train_mode == "neutral" else "W"))
        assert att["band_weights"].shape == (n_held, 24)
        assert np.all(np.isfinite(att["band_weights"]))
        assert len(att["time_weights"]) == len(att["frame_labels"]) == n_held
        for tw, lab in zip(att["time_weights"], att["frame_labels"]):
            assert len(tw) == len(lab) // 4 or abs(len(tw) - len(lab) / 4) <= 1
            assert set(lab) <= {"voiced", "unvoiced", "silence"}
    loaded = load_results(out)
    assert loaded.summary.keys() == res.summary.keys()
    assert loaded.summary[("da_cnn", "W")]["mean"] == pytest.approx(res.summary[("da_cnn", "W")]["mean"])


def test_resume_recomputes_nothing(tmp_path, corpus, counted_da):
    res1 = run_protocol(corpus, models=["da_counted"], out_dir=tmp_path, progress=False,
                        model_params={"da_counted": FAST}, report=False)
    assert counted_da.calls == 6  # 2 training modes x 3 folds serve 4 conditions
    files = sorted((tmp_path / "results").rglob("*.json"))
    assert len(files) == 12
    stamps = {f: f.stat().st_mtime_ns for f in files}
    res2 = run_protocol(corpus, models=["da_counted"], out_dir=tmp_path, progress=False,
                        model_params={"da_counted": FAST}, report=False)
    assert counted_da.calls == 6
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    assert res2.summary == res1.summary
    # other settings in the same folder: refused, nothing overwritten
    with pytest.raises(ValueError, match="other settings"):
        run_protocol(corpus, models=["da_counted"], out_dir=tmp_path, progress=False,
                     model_params={"da_counted": {"max_epochs": 3}}, report=False)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps


def test_fit_interrupted_between_its_files_keeps_the_finished_one(tmp_path, corpus, counted_da):
    run_protocol(corpus, models=["da_counted"], out_dir=tmp_path, progress=False,
                 model_params={"da_counted": FAST}, report=False)
    files = sorted((tmp_path / "results").rglob("*.json"))
    # as if the run died after writing N/W of fold 0 but before writing N of fold 0
    matched = [f for f in files if json.loads(f.read_text())["condition"] == "N"
               and json.loads(f.read_text())["fold"] == 0]
    assert len(matched) == 1
    kept = [f for f in files if f not in matched]
    stamps = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in kept}
    matched[0].unlink()
    res = run_protocol(corpus, models=["da_counted"], out_dir=tmp_path, progress=False,
                       model_params={"da_counted": FAST}, report=False)
    assert counted_da.calls == 7  # only the fit that lost a file ran again
    assert matched[0].is_file() and len(res.records) == 12
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in kept} == stamps


def test_same_seed_same_numbers(corpus):
    kw = dict(models=["da_cnn"], conditions=["N/W"], progress=False, model_params={"da_cnn": FAST})
    a = run_protocol(corpus, random_state=3, **kw)
    b = run_protocol(corpus, random_state=3, **kw)
    assert [r["y_pred"] for r in a.records] == [r["y_pred"] for r in b.records]
    assert a.summary == b.summary
    assert a.config["random_state"] == 3
    seeds = [r["seed"] for r in a.records]
    assert seeds == [r["seed"] for r in b.records]
    assert seeds == [seed_for(3, "da_cnn", "neutral", k) for k in range(3)]
    assert seeds != [seed_for(4, "da_cnn", "neutral", k) for k in range(3)]


def test_neutral_only_corpus_ex1_and_combined_table(neutral_corpus, full_run):
    res = run_protocol(neutral_corpus, models=["da_cnn"], conditions=["MOBI", "W", "N/W"],
                       progress=False, model_params={"da_cnn": FAST})
    assert res.conditions == ["MOBI"]
    assert len(res.records) == 3
    assert any("W skipped" in n for n in res.notes) and any("N/W skipped" in n for n in res.notes)
    table = res.to_markdown()
    assert "MOBI (Ex-1)" in table and "(94.56)" in table
    both = combine_results(res, full_run[1])
    assert both.conditions == ["MOBI", "N", "W", "N/W", "W/N"]
    assert both.table_rows()[0] == ["model", "MOBI (Ex-1)", "N", "W", "N/W", "W/N"]
    assert both.summary[("da_cnn", "MOBI")] == res.summary[("da_cnn", "MOBI")]
    with pytest.raises(ValueError, match="overlap"):
        combine_results(res, res)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"models": ["resnet"]}, "unknown model 'resnet'"),
        ({"models": []}, "models is empty"),
        ({"conditions": ["X"]}, "unknown condition 'X'"),
        ({"model_params": {"sa_cnn": {"max_epochs": 2}}, "models": ["da_cnn"]}, "models not run"),
        ({"n_splits": 4}, "at least 4 speakers"),
        ({"random_state": 1.5}, "random_state"),
    ],
)
def test_bad_arguments(corpus, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run_protocol(corpus, progress=False, **kwargs)


def test_bad_corpus():
    with pytest.raises(TypeError, match="missing 'groups'"):
        run_protocol({"data": [np.zeros(100)], "target": ["a"]})
    with pytest.raises(ValueError, match="mode values"):
        run_protocol({"data": [np.zeros(100)] * 3, "target": ["a"] * 3, "groups": ["x", "y", "z"],
                      "mode": ["loud"] * 3})


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from devicepool.datasets import make_device_corpus
    from devicepool.protocol import run_protocol
    corpus = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)
    p = {"max_epochs": 2, "batch_size": 8}
    run_protocol(corpus, models=["da_cnn"], out_dir=sys.argv[1], progress=False,
                 model_params={"da_cnn": p}, report=False)
    """
)


def test_killed_run_resumes_and_loses_nothing(tmp_path, corpus):
    out = tmp_path / "run"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, cwd=ROOT)
    deadline = time.monotonic() + 600
    try:
        while not list((out / "results").rglob("*.json")):
            assert proc.poll() is None, "the run ended before writing any result"
            assert time.monotonic() < deadline, "no result file within 600 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = sorted((out / "results").rglob("*.json"))
    assert 1 <= len(finished) < 12, "the kill must land mid-way"
    stamps = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in finished}
    res = run_protocol(corpus, models=["da_cnn"], out_dir=out, progress=False,
                       model_params={"da_cnn": FAST}, report=False)
    assert len(res.records) == 12 and all(s["n_folds"] == 3 for s in res.summary.values())
    for f, (mtime, content) in stamps.items():
        assert f.stat().st_mtime_ns == mtime and f.read_bytes() == content
    for f in finished:
        rec = json.loads(f.read_text())
        match = [r for r in res.records if (r["model"], r["condition"], r["fold"]) ==
                 (rec["model"], rec["condition"], rec["fold"])]
        assert match[0]["y_pred"] == rec["y_pred"]


def test_paper_claims_and_chance_levels_are_judged_from_the_numbers():
    from devicepool.protocol import ProtocolResult, chance_levels, paper_claims

    def s(mean, std=0.5):
        return {"mean": mean, "std": std, "n_folds": 3, "accuracies": [mean] * 3}

    res = ProtocolResult(models=["dft_cnn", "sa_cnn", "da_cnn"], conditions=["N", "W", "N/W", "W/N"])
    res.summary = {
        ("da_cnn", "N"): s(99.0), ("da_cnn", "W"): s(98.0, 2.0), ("da_cnn", "N/W"): s(80.0),
        ("da_cnn", "W/N"): s(99.5),
        ("sa_cnn", "N"): s(90.0), ("sa_cnn", "W"): s(99.0),
        ("dft_cnn", "N"): s(99.5), ("dft_cnn", "W"): s(97.0),
    }
    lines = paper_claims(res)
    text = "\n".join(lines)
    assert "DA-CNN ≥ SA-CNN (matched modes), N: 99.0 vs 90.0 -> supported" in text
    assert "DA-CNN ≥ SA-CNN (matched modes), W: 98.0 vs 99.0 -> not supported (difference within" in text
    assert "DA-CNN ≥ DFT-CNN baseline (matched modes), N: 99.0 vs 99.5 -> not supported" in text
    assert "whisper ≥ neutral, DA-CNN: W 98.0 vs N 99.0 -> not supported (difference within" in text
    assert "mismatch drop, DA-CNN: N/W 80.0 vs N 99.0 -> supported" in text
    assert "mismatch drop, DA-CNN: W/N 99.5 vs W 98.0 -> not supported" in text
    res.records = [{"condition": "N", "labels": list("abcdef")}, {"condition": "MOBI", "labels": list("abcd")}]
    assert chance_levels(res) == {"N": 100 / 6, "MOBI": 25.0}


@pytest.fixture
def lr_meanframe():
    """A registered mean-frame logistic regression (cheap fits), unregistered afterwards."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    register_model("lr_meanframe", lambda random_state=None, **p: make_pipeline(
        FunctionTransformer(mean_frame), LogisticRegression(max_iter=500)))
    yield "lr_meanframe"
    unregister_model("lr_meanframe")


def test_mode_augmentation_adds_training_copies_only(corpus, tmp_path, lr_meanframe):
    plain = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False)
    aug = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                       mode_augmentation=True, out_dir=tmp_path)
    # a run with and one without augmentation never share results
    with pytest.raises(ValueError, match="other settings"):
        run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                     out_dir=tmp_path)
    by = {(r["condition"], r["fold"]): r for r in plain.records}
    assert len(aug.records) == len(plain.records) == 12
    for r in aug.records:
        p = by[(r["condition"], r["fold"])]
        assert list(r["test_index"]) == list(p["test_index"])           # copies are never tested
        assert max(r["test_index"]) < len(corpus.data)
        assert r["n_train"] == 2 * p["n_train"]                        # + one copy each
    # the copies' features are cached beside the corpus's own
    assert len(list((tmp_path / "cache").glob("features-fbank-*.npz"))) == 2


def test_mode_augmentation_in_one_direction(corpus, tmp_path, lr_meanframe):
    plain = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False)
    voc = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                       mode_augmentation="vocalise", out_dir=tmp_path)
    both = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                        mode_augmentation=True)
    # True and "both" are one setting: a folder of one resumes with the other
    run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                 mode_augmentation=True, out_dir=tmp_path / "both")
    again = run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                         mode_augmentation="both", out_dir=tmp_path / "both")
    assert again.config["mode_augmentation"] == "both"
    # one direction and both are other settings
    for other in (True, "both", "whisperise"):
        with pytest.raises(ValueError, match="other settings"):
            run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                         out_dir=tmp_path, mode_augmentation=other)
    # a neutral-only corpus has nothing to vocalise: the fits of no augmentation
    neutral = make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2,
                                 modes=("neutral",), random_state=0)
    alone = run_protocol(neutral, models=["lr_meanframe"], progress=False, report=False)
    none = run_protocol(neutral, models=["lr_meanframe"], progress=False, report=False,
                        mode_augmentation="vocalise", out_dir=tmp_path / "neutral")
    with warnings.catch_warnings():  # no empty copies cached, so no damaged cache to warn of
        warnings.simplefilter("error")
        run_protocol(neutral, models=["lr_meanframe"], progress=False, report=False,
                     mode_augmentation="vocalise", out_dir=tmp_path / "neutral", resume=False)
    assert [r["accuracy"] for r in none.records] == [r["accuracy"] for r in alone.records]
    assert [r["n_train"] for r in none.records] == [r["n_train"] for r in alone.records]
    for bad in ("vocalize", 1, "neutral"):
        with pytest.raises(ValueError, match="mode_augmentation must be"):
            run_protocol(corpus, models=["lr_meanframe"], progress=False, report=False,
                         mode_augmentation=bad)
    assert voc.config["mode_augmentation"] == "vocalise" and plain.config["mode_augmentation"] is None
    assert both.config["mode_augmentation"] == "both"
    by = {(r["condition"], r["fold"]): r for r in plain.records}
    by_both = {(r["condition"], r["fold"]): r for r in both.records}
    for r in voc.records:
        p = by[(r["condition"], r["fold"])]
        assert list(r["test_index"]) == list(p["test_index"])
        if r["condition"] in ("W", "W/N"):  # whisper-trained: a vocalised copy each
            assert r["n_train"] == 2 * p["n_train"]
            # the same copies as with both directions
            assert r["accuracy"] == by_both[(r["condition"], r["fold"])]["accuracy"]
        else:  # neutral-trained: no copies, the fit of no augmentation
            assert r["n_train"] == p["n_train"] and r["accuracy"] == p["accuracy"]


def test_a_registered_model_runs_in_worker_processes(corpus):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    register_model("lr_workers", lambda random_state=None, **p: make_pipeline(
        FunctionTransformer(mean_frame), LogisticRegression(max_iter=500)))
    try:
        serial = run_protocol(corpus, models=["lr_workers"], progress=False, report=False)
        parallel = run_protocol(corpus, models=["lr_workers"], progress=False, report=False, n_jobs=2)
    finally:
        unregister_model("lr_workers")
    assert serial.summary == parallel.summary and len(parallel.records) == 12


def test_the_report_records_what_a_rerun_needs(full_run):
    out, res = full_run
    config = json.loads((out / "protocol.json").read_text())
    assert set(config["versions"]) >= {"devicepool", "torch", "skorch", "scikit-learn", "numpy"}
    # the version of the code that ran, not an editable install's stale metadata
    assert config["versions"]["devicepool"] == devicepool.__version__ and config["torch_threads"] >= 1
    assert "pytest" in config["command"] or "devicepool" in config["command"]
    report = (out / "report.md").read_text()
    assert "## Settings" in report and f"torch threads {config['torch_threads']}" in report


def test_to_frame(full_run):
    _, res = full_run
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="to_frame needs pandas"):
            res.to_frame()
        return
    frame = res.to_frame()
    assert len(frame) == len(res.records) and {"model", "condition", "fold", "accuracy"} <= set(frame)
