"""Benchmark 4: peak RSS of FilterBank features + fitting DA-CNN, for three corpus sizes.

Each size runs in a fresh subprocess (so ``ru_maxrss`` is that size's own peak):
3 s speech utterances held in memory as float32 waveforms -> ``FilterBank().transform``
-> ``DACNNClassifier(max_epochs=1, train_split=None).fit``. Training stops after
``--train-batches`` mini-batches (an iterator cap) and no validation pass is run, to keep
the run short on 2 cores: the memory of fit is set before the first batch (data set,
normalisation statistics over all frames, model, one batch of activations), so neither
shortcut lowers the peak. The reference printed beside it is the size of the data itself
(waveforms and features), measured in the same run.

``--long`` measures instead the training memory bound (``max_batch_frames``): DA-CNN
fitted without crops (``crop_frames=None``, batch 16, one epoch, no validation) on 15
utterances of 3 s and one long utterance (random feature frames: memory does not depend
on their values), with the default budget and without one, each in a fresh subprocess;
the reference is the same fit with the long utterance replaced by a 3 s one.

Usage (from the repository root)::

    python bench/bench_memory.py                        # 1,000 / 3,000 / 10,000 utterances
    python bench/bench_memory.py --sizes 200,500 --quick
    python bench/bench_memory.py --long                 # memory bound of fit
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import (
    ROOT,
    current_rss_mib,
    load_average,
    machine_description,
    peak_rss_mib,
    print_machine,
    save_results,
)


def child(n, train_batches):
    import numpy as np
    from _common import speech_utterances

    from devicepool import FilterBank
    from devicepool.estimators import BucketIterator, DACNNClassifier

    class CappedBucketIterator(BucketIterator):
        """BucketIterator that stops after ``max_batches`` batches (benchmark only)."""

        def __init__(self, dataset, max_batches=None, **kwargs):
            super().__init__(dataset, **kwargs)
            self.max_batches = max_batches

        def __iter__(self):
            for i, batch in enumerate(super().__iter__()):
                if self.max_batches is not None and i >= self.max_batches:
                    return
                yield batch

    rec = {"n": n, "rss_start_mib": current_rss_mib()}
    t0 = time.perf_counter()
    X, source = speech_utterances(n, 3.0, dtype="float32")
    y = np.arange(n) % 6
    rec["source"] = source
    rec["waveform_mib"] = sum(x.nbytes for x in X) / 2**20
    rec["rss_after_waveforms_mib"] = current_rss_mib()
    t1 = time.perf_counter()
    feats = FilterBank().transform(X)
    rec["features_s"] = time.perf_counter() - t1
    rec["features_mib"] = sum(f.nbytes for f in feats) / 2**20
    rec["rss_after_features_mib"] = current_rss_mib()
    rec["peak_rss_after_features_mib"] = peak_rss_mib()
    t2 = time.perf_counter()
    clf = DACNNClassifier(max_epochs=1, random_state=0, train_split=None,
                          iterator_train=CappedBucketIterator,
                          iterator_train__max_batches=train_batches)
    clf.fit(feats, y)
    rec["fit_s"] = time.perf_counter() - t2
    rec["rss_after_fit_mib"] = current_rss_mib()
    rec["peak_rss_mib"] = peak_rss_mib()
    rec["total_s"] = time.perf_counter() - t0
    print(json.dumps(rec))


LONG_CASES = [  # (label, minutes of the long utterance, max_batch_frames)
    ("reference: 16 x 3 s", 0.0, "default"),
    ("1 min, no budget", 1.0, "none"),
    ("1 min, default budget", 1.0, "default"),
    ("10 min, default budget", 10.0, "default"),
]


def child_long(minutes, budget):
    import numpy as np

    from devicepool.estimators import DACNNClassifier

    rng = np.random.default_rng(0)
    lengths = [300] * 15 + [int(minutes * 6000) if minutes else 300]
    X = [rng.normal(size=(n, 24)).astype(np.float32) for n in lengths]
    y = np.arange(16) % 4
    params = {} if budget == "default" else {"max_batch_frames": None}
    clf = DACNNClassifier(crop_frames=None, batch_size=16, max_epochs=1, max_steps=None,
                          train_split=None, random_state=0, **params)
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the budget's crop warning
        clf.fit(X, y)
    print(json.dumps({"minutes": minutes, "budget": budget, "fit_s": time.perf_counter() - t0,
                      "max_batch_frames": clf.max_batch_frames, "peak_rss_mib": peak_rss_mib()}))


def main_long(args):
    desc = machine_description()
    print_machine(desc)
    rows = []
    print(f"\n{'case':<26s} {'peak RSS MiB':>12s} {'/ reference':>11s} {'fit s':>6s}")
    for label, minutes, budget in LONG_CASES:
        proc = subprocess.run([sys.executable, __file__, "--child-long", f"{minutes}:{budget}"],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        rec["case"] = label
        rows.append(rec)
        ref = rows[0]["peak_rss_mib"]
        print(f"{label:<26s} {rec['peak_rss_mib']:12.0f} {rec['peak_rss_mib'] / ref:11.2f} "
              f"{rec['fit_s']:6.1f}", flush=True)
    path = save_results(args.out, dict(benchmark="memory-long", machine=desc, results=rows))
    print(f"results: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--train-batches", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="memory")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--long", action="store_true", help="the memory bound of fit")
    parser.add_argument("--child-long", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_long:
        minutes, budget = args.child_long.split(":")
        child_long(float(minutes), budget)
        return
    if args.long:
        if args.out == "memory":
            args.out = "memory_long"
        main_long(args)
        return
    if args.child:
        child(args.child, args.train_batches)
        return
    if args.quick:
        args.train_batches = 3

    desc = machine_description()
    print_machine(desc)
    rows = []
    print(f"\n{'utterances':>10s} {'waveforms MiB':>13s} {'features MiB':>12s} "
          f"{'RSS feats MiB':>13s} {'peak RSS MiB':>12s} {'peak/data':>9s} {'feat s':>7s} "
          f"{'fit s':>6s}")
    for n in [int(s) for s in args.sizes.split(",")]:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--train-batches",
             str(args.train_batches)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        rec["load_average"] = load_average()
        rows.append(rec)
        data = rec["waveform_mib"] + rec["features_mib"]
        print(f"{n:10d} {rec['waveform_mib']:13.0f} {rec['features_mib']:12.0f} "
              f"{rec['peak_rss_after_features_mib']:13.0f} {rec['peak_rss_mib']:12.0f} "
              f"{rec['peak_rss_mib'] / data:9.2f} {rec['features_s']:7.1f} {rec['fit_s']:6.1f}",
              flush=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["n"] - a["n"])
        print(f"\ngrowth: {1024 * slope:.0f} KiB of peak RSS per extra 3 s utterance "
              f"(waveform float32 {48000 * 4 / 1024:.0f} KiB + features "
              f"{300 * 24 * 4 / 1024:.1f} KiB of data)")
    path = save_results(args.out, dict(benchmark="memory", machine=desc,
                                       train_batches=args.train_batches, results=rows))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
