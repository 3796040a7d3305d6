"""Benchmark 8: how to train the fusion -- one inner split or cross-fitting, which members.

For each fold of the protocol's speaker-disjoint 3-fold split (``make_folds``) and each
training mode (N, W), every candidate member (a registered model's whole pipeline) is
fitted

* on the inner training part of one speaker-disjoint split (``FusionClassifier``'s
  default, a third of the training speakers held out),
* on each of the 3 cross-fitting folds of the training speakers (``cv=3``),
* on the whole training part (the refit every variant predicts with),

and the fusion weights of each variant are fitted on the held-out scores; the test
speakers' accuracy of every member and every variant is reported per fold, in the training
mode; the members' test scores in the other mode (N/W, W/N) are saved too. The fusion
arithmetic is the library's (``estimators._linear_fusion``); only the bookkeeping that
lets all variants share their member fits is here.

Usage::

    python bench/bench_fusion_variants.py --corpus default --device cuda --n-jobs 6 --out f.json
    python bench/bench_fusion_variants.py --corpus default,../shared/data/fsdd/recordings \
        --n-jobs 2 --threads 1 --out bench/results/fusion_variants_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

MEMBERS = ("da_cnn", "sa_cnn", "dft_cnn", "gsv_svm")
VARIANTS = {  # name -> (inner scheme, members)
    "split: da+dft+gsv": ("split", ("da_cnn", "dft_cnn", "gsv_svm")),
    "cv3: da+dft+gsv": ("cv3", ("da_cnn", "dft_cnn", "gsv_svm")),
    "cv3: da+sa+dft+gsv": ("cv3", ("da_cnn", "sa_cnn", "dft_cnn", "gsv_svm")),
    "cv3: da+sa+gsv": ("cv3", ("da_cnn", "sa_cnn", "gsv_svm")),
    "split: da+sa+dft+gsv": ("split", ("da_cnn", "sa_cnn", "dft_cnn", "gsv_svm")),
}


def _corpus(name):
    from devicepool import make_device_corpus

    if name == "default":
        return make_device_corpus(random_state=0)
    return make_device_corpus(source=name, random_state=0)


def _fit(name, X, y, groups, device, seed, threads):
    import torch

    from devicepool.estimators._routing import groups_fit_params
    from devicepool.protocol import get_model

    torch.set_num_threads(threads)
    spec = get_model(name)
    params = {"device": device} if spec.accepts("device") and device else {}
    pipe = spec.make_pipeline(16000, random_state=seed, **params)
    return pipe.fit(X, y, **groups_fit_params(pipe, groups))


def _one(corpus_name, fold, mode, device, threads, seed=0):
    from devicepool.estimators._linear_fusion import fit_linear_fusion, fuse
    from devicepool.estimators.fusion import _cross_fit_folds, _inner_split, member_scores
    from devicepool.protocol import make_folds

    c = _corpus(corpus_name)
    X = np.empty(len(c.data), dtype=object)
    X[:] = [np.asarray(x, np.float32) for x in c.data]
    y, g = np.asarray(c.target), np.asarray(c.groups)
    # the protocol's folds: speakers split once over both modes; train on one mode, test
    # the held-out speakers in that mode and (cross-mode) in the other
    held_out = make_folds(g, 3)[fold]
    tr, te = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    other = te[c.mode[te] != mode]
    tr, te = tr[c.mode[tr] == mode], te[c.mode[te] == mode]
    classes = np.unique(y[tr])
    y_enc = np.searchsorted(classes, y[tr])
    t0 = time.perf_counter()
    schemes = {"split": [_inner_split(y_enc, g[tr], 1 / 3, seed)],
               "cv3": _cross_fit_folds(y_enc, g[tr], 3, seed)}
    held_scores = {s: {} for s in schemes}
    for scheme, splits in schemes.items():
        for m in MEMBERS:
            scores = np.full((len(tr), len(classes)), np.nan)
            for a, b in splits:
                est = _fit(m, X[tr][a], y[tr][a], g[tr][a], device, seed, threads)
                scores[b] = member_scores(est, X[tr][b], classes)
            held_scores[scheme][m] = scores
    full = {m: _fit(m, X[tr], y[tr], g[tr], device, seed, threads) for m in MEMBERS}
    test_scores = {m: member_scores(est, X[te], classes) for m, est in full.items()}
    other_scores = {m: member_scores(est, X[other], classes) for m, est in full.items()}
    truth = np.searchsorted(classes, y[te])
    acc = {m: float(np.mean(s.argmax(1) == truth)) for m, s in test_scores.items()}
    weights = {}
    for name, (scheme, members) in VARIANTS.items():
        dev = np.flatnonzero(~np.isnan(held_scores[scheme][members[0]][:, 0]))
        w, b = fit_linear_fusion([held_scores[scheme][m][dev] for m in members], y_enc[dev],
                                 len(classes))
        z = fuse([test_scores[m] for m in members], w, b)
        acc[name] = float(np.mean(z.argmax(1) == truth))
        weights[name] = [float(v) for v in w]
    arrays = {"y_train": y_enc, "y_test": truth, "y_other": np.searchsorted(classes, y[other])}
    for scheme in schemes:
        for m in MEMBERS:
            arrays[f"{scheme}|{m}"] = held_scores[scheme][m]
    for m in MEMBERS:
        arrays[f"test|{m}"] = test_scores[m]
        arrays[f"other|{m}"] = other_scores[m]
    return {"corpus": corpus_name, "fold": fold, "mode": mode, "accuracy": acc,
            "weights": weights, "seconds": time.perf_counter() - t0, "arrays": arrays}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="default")
    p.add_argument("--device", default=None)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per job")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from joblib import Parallel, delayed

    jobs = [(c, f, m) for c in args.corpus.split(",") for m in ("neutral", "whisper") for f in range(3)]
    rows = Parallel(n_jobs=args.n_jobs)(delayed(_one)(c, f, m, args.device, args.threads) for c, f, m in jobs)
    for c in args.corpus.split(","):
        for m in ("neutral", "whisper"):
            part = [r for r in rows if r["corpus"] == c and r["mode"] == m]
            print(f"## {c}, {m}")
            for name in [*MEMBERS, *VARIANTS]:
                vals = [100 * r["accuracy"][name] for r in part]
                print(f"{name:24s} {np.mean(vals):5.1f} ± {np.std(vals):3.1f}  folds "
                      + " ".join(f"{v:5.1f}" for v in vals))
    if args.out:
        arrays = {f"{r['corpus'].replace('../', '')}|{r['mode']}|{r['fold']}|{k}": v
                  for r in rows for k, v in r.pop("arrays").items()}
        np.savez_compressed(args.out.rsplit(".", 1)[0] + "_scores.npz", **arrays)
        from _common import machine_description

        # the machine, versions and git commit beside the rows (files before this: the rows alone)
        with open(args.out, "w") as f:
            json.dump({"machine": machine_description(), "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
