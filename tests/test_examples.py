"""Run every script in examples/ in its fast mode and check it succeeds and writes its outputs.

Each example runs as a subprocess (as a user would run it) with
``DEVICEPOOL_EXAMPLES_FAST=1``, in a temporary working directory, with its output folder
in that directory. The default mode (meaningful sizes, minutes) is not run here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name, tmp_path, *args, timeout=300):
    env = dict(os.environ)
    env["DEVICEPOOL_EXAMPLES_FAST"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["OMP_NUM_THREADS"] = "1"  # as the in-process tests (see conftest)
    # The repository root on the path, so the examples run without installing the package.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{name} exited with {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
        f"stderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def test_examples_folder_has_the_five_scripts():
    names = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert names == [
        "attention_plots.py",
        "grouped_cross_validation.py",
        "pretrained_compare.py",
        "quickstart_pipeline.py",
        "train_save_predict_files.py",
    ]


def test_quickstart_pipeline(tmp_path):
    out = run_example("quickstart_pipeline.py", tmp_path)
    assert "18 recordings" in out
    assert "accuracy on held-out speakers:" in out
    acc = float(out.split("accuracy on held-out speakers:")[1].split()[0])
    assert 0.0 <= acc <= 1.0


def test_grouped_cross_validation_writes_report(tmp_path):
    out = run_example("grouped_cross_validation.py", tmp_path, "--out", "cv")
    report = (tmp_path / "cv" / "report.md").read_text()
    assert "mean +- std over 3 folds" in report
    assert report.count("| spk0") == 3  # one row per fold, one held-out speaker each
    rows = (tmp_path / "cv" / "folds.csv").read_text().strip().splitlines()
    assert rows[0].startswith("fold,accuracy") and len(rows) == 4
    assert (tmp_path / "cv" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report written to" in out


def test_train_save_predict_files(tmp_path):
    out = run_example("train_save_predict_files.py", tmp_path, "--out", "model")
    model = tmp_path / "model"
    assert (model / "pipeline.joblib").stat().st_size > 0
    assert (model / "da_cnn.pt").stat().st_size > 0
    # six files of the held-out speaker predicted, each line "path -> device p=..."
    assert out.count(" -> ") == 6
    assert "accuracy on the new speaker's files:" in out
    # the saved files work outside the example too: the safe format loads with weights_only
    import torch

    payload = torch.load(model / "da_cnn.pt", map_location="cpu", weights_only=True)
    assert payload["format"] == "devicepool.pipeline" and payload["format_version"] == 3
    assert payload["object"]["class"].endswith(".DACNNClassifier")
    from devicepool.persistence import load

    assert len(load(model / "da_cnn.pt").classes_) == 3


def test_attention_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("attention_plots.py", tmp_path, "--out", "fig")
    for name in ("fig2a-band-weights.png", "fig2b-time-weights-neutral.png",
                 "fig2c-time-weights-whisper.png"):
        data = (tmp_path / "fig" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert "neutral-trained DA-CNN: accuracy" in out
    assert "whisper-trained DA-CNN: accuracy" in out


def test_pretrained_compare(tmp_path):
    out = run_example("pretrained_compare.py", tmp_path)
    lines = [ln for ln in out.splitlines() if "questioned recording of" in ln]
    llrs = [float(ln.split("log10 LR")[1].split()[0]) for ln in lines]
    assert len(llrs) == 3 and llrs[0] > 0 > max(llrs[1:])  # its own device first, then others
    acc = float(out.split("open-set accuracy on a new speaker:")[1].split()[0])
    assert acc >= 0.75
