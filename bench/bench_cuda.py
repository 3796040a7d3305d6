"""Benchmark 7: one DA-CNN fit on a GPU against the same fit on the CPU, same process.

Protocol: the default embedded corpus (``make_device_corpus(random_state=0)``), neutral
speech, fold 0 of the speaker-disjoint 3-fold GroupKFold; ``DACNNClassifier`` at its
defaults (400 steps), ``random_state=0``, ``fit(..., groups=speakers)``; accuracy on the
held-out speakers. The same fit runs with ``device="cpu"`` (all the machine's cores as
torch threads) and ``device="cuda"``; the report gives both wall times, their ratio and
both accuracies. Needs a CUDA device (run on a device machine).

Usage: ``python bench/bench_cuda.py [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch
    from sklearn.model_selection import GroupKFold

    from devicepool import DACNNClassifier, FilterBank, make_device_corpus

    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda: torch sees no CUDA device")
    c = make_device_corpus(random_state=0)
    keep = np.flatnonzero(c.mode == "neutral")
    X = FilterBank().transform([c.data[i] for i in keep])
    y, g = c.target[keep], c.groups[keep]
    tr, te = next(GroupKFold(3).split(X, y, g))
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
           "n_train": len(tr), "n_test": len(te)}
    for device in ("cuda", "cpu", "cuda"):  # cuda twice: the first pays CUDA's start-up
        t0 = time.perf_counter()
        clf = DACNNClassifier(device=device, random_state=0).fit(X[tr], y[tr], groups=g[tr])
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        acc = float(np.mean(clf.predict(X[te]) == y[te]))
        out.setdefault(device, []).append({"fit_seconds": seconds, "accuracy": acc})
        print(device, f"{seconds:.1f} s", f"accuracy {100 * acc:.1f} %", flush=True)
    out["cpu_over_gpu"] = out["cpu"][0]["fit_seconds"] / out["cuda"][1]["fit_seconds"]
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
