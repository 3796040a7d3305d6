"""The protocol on a dask.distributed cluster: same seeds, same numbers as a serial run."""

import logging
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import joblib  # noqa: E402
from conftest import FOLDER_PATTERN, write_folder_corpus  # noqa: E402

from devicepool.cli import main  # noqa: E402
from devicepool.datasets import make_device_corpus  # noqa: E402
from devicepool.protocol import run_protocol  # noqa: E402

FAST = {"max_epochs": 2, "batch_size": 8}
PATTERN = FOLDER_PATTERN


@pytest.fixture(scope="module")
def corpus():
    return make_device_corpus(n_devices=3, n_speakers=3, n_utterances=2, random_state=0)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as c:
        yield c


def test_protocol_on_a_cluster_matches_the_serial_run(cluster, corpus, tmp_path):
    kw = dict(models=["da_cnn"], model_params={"da_cnn": FAST}, progress=False, report=False)
    serial = run_protocol(corpus, **kw)  # one torch thread here (conftest), as on the workers
    with distributed.Client(cluster) as client, joblib.parallel_backend("dask"):
        with distributed.get_task_stream(client) as stream:
            remote = run_protocol(corpus, n_jobs=-1, out_dir=tmp_path, **kw)
    fits = [t for t in stream.data if "_numbered_fit" in str(t["key"])]
    assert len(fits) >= 2 and {t["worker"] for t in fits} == set(cluster.scheduler_info["workers"])
    assert remote.to_markdown() == serial.to_markdown()
    assert remote.config["seeds"] == serial.config["seeds"]
    assert remote.summary == serial.summary
    key = ("model", "condition", "fold", "seed", "accuracy", "y_pred", "test_index")
    assert [[r[k] for k in key] for r in remote.records] == [[r[k] for k in key] for r in serial.records]
    # the fits' Fig. 2 data came back and was written here
    assert len(list((tmp_path / "results" / "da_cnn").glob("attention-*.npz"))) == 6
    assert remote.attention["neutral"]["band_weights"].shape == (18, 24)


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory, corpus):
    return write_folder_corpus(tmp_path_factory.mktemp("corpus"), corpus)


def test_cli_evaluate_on_a_scheduler(cluster, folder_corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
            "--models", "da_cnn", "--max-epochs", "2", "--out", str(out)]
    assert main(args + ["--scheduler", cluster.scheduler_address, "--quiet"]) == 0
    assert len(list((out / "results").rglob("*.json"))) == 12
    assert "| DA-CNN |" in capsys.readouterr().out
    assert Path(out, "fig2a-band-weights.png").is_file()


def test_cli_unreachable_scheduler_is_a_one_line_error(folder_corpus, tmp_path, capsys):
    import dask

    args = ["evaluate", "--corpus", "folder", "--root", str(folder_corpus), "--pattern", PATTERN,
            "--models", "da_cnn", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1"]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("devicepool: error: cannot reach the dask scheduler")
    assert not (tmp_path / "results").exists()
