"""The pretrained embedding on the command line: compare and calibrate without a trained
model, the LR bounds and coverage warnings they print, and ``devicepool pretrain``."""

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import FOLDER_PATTERN, write_folder_corpus
from test_forensic_cli import one_line_error

from devicepool.cli import main
from devicepool.datasets import make_device_corpus


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    corpus = make_device_corpus(n_devices=3, n_speakers=4, n_utterances=2, modes=("neutral",), random_state=3)
    return write_folder_corpus(tmp_path_factory.mktemp("corpus"), corpus)


def files_of(root, device, speaker):
    return sorted(str(p) for p in root.glob(f"{device}/**/{speaker}_*.wav"))


def test_compare_needs_no_model(folder, capsys):
    refs = files_of(folder, "phone_gsm", "spk01") + files_of(folder, "phone_gsm", "spk02")
    same = files_of(folder, "phone_gsm", "spk03")
    other = files_of(folder, "studio_condenser", "spk03")
    assert main(["compare", "--reference", *refs, "--questioned", *same, *other, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    llr = [row["llr"] for row in doc["questioned"]]
    assert min(llr[:len(same)]) > 0 > max(llr[len(same):])
    low, high = doc["llr_bounds"]
    assert low < 0 < high and all(low <= v <= high for v in llr)
    assert doc["model"] == "pretrained" and doc["calibration"]["model"] == "pretrained device embedding"
    assert doc["warnings"] == []
    assert main(["compare", "--reference", *refs, "--questioned", *same]) == 0
    out = capsys.readouterr().out
    assert "# LRs are bounded to log10 LR in [" in out and "pretrained device embedding" in out


def test_compare_warns_about_recordings_outside_the_calibration(folder, tmp_path, capsys):
    refs = files_of(folder, "phone_gsm", "spk01")
    x, rate = sf.read(files_of(folder, "phone_gsm", "spk03")[0])
    sf.write(tmp_path / "short.wav", x[: rate // 4], rate)
    sf.write(tmp_path / "silent.wav", np.zeros(2 * rate), rate)
    assert main(["compare", "--reference", *refs, "--questioned", str(tmp_path / "short.wav"),
                 str(tmp_path / "silent.wav")]) == 0
    out = capsys.readouterr().out
    warnings = [ln for ln in out.splitlines() if ln.startswith("# warning:")]
    assert any("short.wav" in w and "0.25 s long" in w for w in warnings)
    assert any("silent.wav" in w and "silent" in w for w in warnings)


def test_calibrate_the_pretrained_embedding_reports_a_cross_validated_cllr(folder, tmp_path, capsys):
    out = tmp_path / "mine.pt"
    assert main(["calibrate", "--corpus", "folder", "--root", str(folder), "--pattern", FOLDER_PATTERN,
                 "--scoring", "cosine", "--calibration", "logistic", "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "cross-validated (speaker-disjoint, 3 folds): Cllr" in text
    assert "resubstitution Cllr" in text and "LRs bounded to log10 LR in" in text
    refs = files_of(folder, "phone_gsm", "spk01")
    q = files_of(folder, "phone_gsm", "spk04")
    assert main(["compare", "--model", str(out), "--reference", *refs, "--questioned", *q, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["calibration"]["model"] == "pretrained device embedding, recalibrated"
    assert doc["calibration"]["scoring"] == "cosine" and "cv_cllr" in doc["calibration"]


def test_pretrain_refuses_a_recipe_that_would_fail_late(shared_data, tmp_path):
    from devicepool.protocol.pretrain import PretrainRecipe, pretrain

    with pytest.raises(ValueError, match="needs real speech"):
        pretrain(PretrainRecipe(), tmp_path / "w", microphone_folder=shared_data / "micirp", source=None)
    with pytest.raises(ValueError, match="n_calibration_devices must be >= 4"):
        pretrain(PretrainRecipe(n_calibration_devices=2, calibration_speech="all"), tmp_path / "w",
                 microphone_folder=shared_data / "micirp")
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_pretrain_errors_are_one_line(tmp_path, capsys):
    assert main(["pretrain", "--microphones", str(tmp_path / "nope"), "-o", str(tmp_path / "w")]) == 2
    assert "--microphones" in one_line_error(capsys.readouterr().err)
    (tmp_path / "mics").mkdir()
    assert main(["pretrain", "--microphones", str(tmp_path / "mics"), "-o", str(tmp_path / "w")]) == 2
    assert "no WAV file" in one_line_error(capsys.readouterr().err)


def test_a_tiny_pretraining_runs_end_to_end_and_resumes(shared_data, tmp_path, capsys):
    """The recipe from scratch (simulation, training, back end, bundle), then a rerun that
    resumes from the checkpoint instead of training again, a rerun with another population
    refused before any simulation, and the bundle in use (about 20 s)."""
    from devicepool.estimators.embedding import DeviceEmbedding

    work = tmp_path / "work"
    argv = ["pretrain", "--microphones", str(shared_data / "micirp"), "-o", str(work), "--devices", "12",
            "--recordings", "4", "--steps", "20", "--threads", "1", "--calibration-devices", "8",
            "--speakers", "12"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and (work / "device_embedding.pt").is_file()
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 20 and np.isfinite(log[-1]["loss"])
    assert main(argv) == 0
    assert "resumed at step 20" in capsys.readouterr().err
    other = [a if a != "12" else "13" for a in argv]
    assert main(other) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("devicepool: error:")]
    assert len(errors) == 1 and "another population" in errors[0] and "n_devices" in errors[0]
    assert "devices up to" not in err and "Traceback" not in err  # refused before any simulation
    emb = DeviceEmbedding(weights=work / "device_embedding.pt").fit()
    assert emb.metadata_["recipe"]["n_devices"] == 12
    assert emb.transform([np.random.default_rng(0).standard_normal(16000) * 0.1]).shape[0] == 1
