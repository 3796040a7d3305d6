"""Ablation of the training recipe and of the readings of eq. 2 (DA-CNN / SA-CNN).

One configuration per call: a classifier with library defaults plus the given overrides,
trained on the default embedded corpus (``make_device_corpus(random_state=0)``) in one
condition, speaker-disjoint 3-fold (``devicepool.protocol.make_folds``), utterance
accuracy per fold, mean ± std; the other speaking mode of the same held-out speakers is
the cross-mode test (N/W for a neutral fit, W/N for a whisper one). Classifier
``random_state=0``, one torch thread. Fit times are per fold and only comparable between
runs made on an equally loaded machine (the ablation table in ``docs/models.md`` was run
with several configurations in parallel on the 2-core machine).

Usage (from the repository root)::

    python bench/bench_ablation.py da '{}' N
    python bench/bench_ablation.py da '{"module__band_pooling": "sum"}' N
    python bench/bench_ablation.py da '{"train_split": null}' N --no-groups
    python bench/bench_ablation.py da '{}' W --mode-augmentation
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import SHARED  # noqa: F401  (puts the checkout on sys.path)

from devicepool import FilterBank, make_device_corpus
from devicepool import estimators as E
from devicepool.datasets import vocalise_recordings, whisperise_recordings
from devicepool.protocol import CONDITIONS, make_folds

CLASSES = {"da": E.DACNNClassifier, "sa": E.SACNNClassifier}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(CLASSES))
    p.add_argument("params", help="JSON overrides of the classifier's defaults")
    p.add_argument("condition", choices=["N", "W"])
    p.add_argument("--no-groups", action="store_true", help="fit without the speakers")
    p.add_argument("--mode-augmentation", action="store_true",
                   help="add the other-mode copy of each training recording (as run_protocol)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    params = json.loads(args.params)
    corpus = make_device_corpus(random_state=0)
    mode, y, g = np.asarray(corpus.mode), np.asarray(corpus.target), np.asarray(corpus.groups)
    fb = FilterBank()
    F = fb.fit_transform(corpus.data)
    train_mode = CONDITIONS[args.condition][0]
    copies = None
    if args.mode_augmentation:
        make = whisperise_recordings if train_mode == "neutral" else vocalise_recordings
        src = np.flatnonzero(mode == train_mode)
        copies = dict(zip(src.tolist(), fb.transform(make(list(corpus.data[src]), 16000))))
    accs, cross, fit_s = [], [], []
    for k, held in enumerate(make_folds(g, 3)):
        tr = np.flatnonzero(~held & (mode == train_mode))
        X, ytr, gtr = [F[i] for i in tr], y[tr], g[tr]
        if copies is not None:
            X += [copies[i] for i in tr]
            ytr, gtr = np.concatenate([ytr, y[tr]]), np.concatenate([gtr, g[tr]])
        clf = CLASSES[args.model](random_state=0, **params)
        t0 = time.perf_counter()
        clf.fit(X, ytr, **({} if args.no_groups else {"groups": gtr}))
        fit_s.append(time.perf_counter() - t0)
        other = "whisper" if train_mode == "neutral" else "neutral"
        for out, test_mode in ((accs, train_mode), (cross, other)):
            te = np.flatnonzero(held & (mode == test_mode))
            out.append(100 * float(np.mean(clf.predict([F[i] for i in te]) == y[te])))
        print(f"fold {k}: {accs[-1]:.1f} (cross-mode {cross[-1]:.1f}), fit {fit_s[-1]:.0f} s, "
              f"{clf.train_plan_['epochs']} epochs / {clf.train_plan_['steps']} steps", flush=True)
    other = {"N": "N/W", "W": "W/N"}[args.condition]
    print(f"RESULT {args.model} {json.dumps(params)} groups={not args.no_groups} "
          f"mode_augmentation={args.mode_augmentation}: {args.condition} "
          f"{np.mean(accs):.1f} ± {np.std(accs):.1f} | {other} {np.mean(cross):.1f} ± "
          f"{np.std(cross):.1f} | fit {np.mean(fit_s):.0f} s / fold")


if __name__ == "__main__":
    main()
