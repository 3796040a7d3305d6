"""Benchmark 5: Table 3 (utterance accuracy, mean ± std over speaker folds) via the CLI.

Runs the ``devicepool`` command as a user would, in subprocesses:

* ``fsdd``: ``devicepool evaluate --corpus demo --root ../shared/data/fsdd/recordings``:
  ``make_device_corpus(source=<FSDD recordings>, random_state=SEED)`` with its defaults
  (6 devices, every FSDD speaker (6), 8 utterances per speaker and mode, neutral and
  LPC-whisperised speech, >= 1.5 s each);
* ``demo``: ``devicepool demo`` (the embedded demo corpus: synthesised speech through
  the packaged MicIRP device chains, the CLI's ``DEMO_SETTINGS``).

Protocol (``devicepool.experiments.run_protocol``): speaker-disjoint GroupKFold
(``--n-splits``, default 3) by speaker, utterance-level accuracy, mean ± std over the
folds; conditions N, W, N/W, W/N where the corpus has both modes. ``--max-epochs``
shortens training (reported with the table). The reference for each table is the chance
level, 1 / number of devices (6 devices: 16.7 %; the demo's 4 devices: 25 %).

Usage (from the repository root)::

    python bench/bench_accuracy.py                       # both corpora
    python bench/bench_accuracy.py --which fsdd --max-epochs 8 --conditions N,W
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, ROOT, SHARED, load_average, machine_description, print_machine, save_results


def run(cmd, log):
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(cmd)}\n\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}); log: {log}")
    print(proc.stdout)
    return proc.stdout, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", default="fsdd,demo")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="override the models' max_epochs for the fsdd run")
    parser.add_argument("--conditions", default=None, help="e.g. N,W (default: all)")
    parser.add_argument("--models", default=None, help="default: dft_cnn,sa_cnn,da_cnn")
    parser.add_argument("--n-splits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/devicepool-bench-accuracy",
                        help="run folders (features cache, per-fold JSON)")
    parser.add_argument("--quick", action="store_true", help="demo --quick only")
    parser.add_argument("--threads", type=int, default=None,
                        help="passed to the CLI's --threads (torch threads in the main process)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="passed to the CLI's --n-jobs (parallel fits)")
    args = parser.parse_args(argv)

    desc = machine_description()
    print_machine(desc)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {}
    which = ["demo"] if args.quick else args.which.split(",")
    for name in which:
        run_dir = work / name
        if name == "fsdd":
            source = SHARED / "fsdd" / "recordings"
            if not source.is_dir():
                print(f"skipping fsdd: {source} is absent")
                continue
            cmd = [sys.executable, "-m", "devicepool", "evaluate", "--corpus", "demo",
                   "--root", str(source), "--out", str(run_dir), "--seed", str(args.seed),
                   "--n-splits", str(args.n_splits), "--quiet"]
            if args.max_epochs:
                cmd += ["--max-epochs", str(args.max_epochs)]
            if args.conditions:
                cmd += ["--conditions", args.conditions]
            if args.models:
                cmd += ["--models", args.models]
        else:
            cmd = [sys.executable, "-m", "devicepool", "demo", "--out", str(run_dir),
                   "--seed", str(args.seed)] + (["--quick"] if args.quick else [])
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.n_jobs:
            cmd += ["--n-jobs", str(args.n_jobs)]
        load_before = load_average()
        stdout, elapsed = run(cmd, RESULTS / f"accuracy_{name}.log")
        report = run_dir / "report.md"
        if report.exists():
            shutil.copyfile(report, RESULTS / f"accuracy_{name}_report.md")
        out[name] = dict(command=" ".join(cmd[1:]), seconds=elapsed, table_markdown=stdout,
                         load_average_before=load_before, load_average=load_average())
        print(f"({name}: {elapsed:.0f} s)\n")
    # one corpus per call is allowed: keep the other corpus's figures of an earlier call
    previous = RESULTS / "accuracy.json"
    runs = {}
    if previous.exists():
        try:
            runs = json.loads(previous.read_text()).get("runs", {})
        except ValueError:
            runs = {}
    for name, item in out.items():
        item.update(machine=desc, n_splits=args.n_splits, seed=args.seed,
                    max_epochs=args.max_epochs, conditions=args.conditions, models=args.models)
        runs[name] = item
    save_results("accuracy", dict(benchmark="accuracy", machine=desc, runs=runs,
                                  n_splits=args.n_splits, seed=args.seed))


if __name__ == "__main__":
    main()
