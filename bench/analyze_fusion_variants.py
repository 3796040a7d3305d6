"""Fusion variants recomputed from the scores saved by ``bench_fusion_variants.py``.

For every corpus, mode and fold the file holds each member's held-out scores under the two
inner schemes (``split``: one speaker-disjoint split; ``cv3``: 3-fold cross-fitting) and
its test scores after the refit on the whole training part. Variants:

* ``learned``: one linear logistic fusion of the members (ridge as named);
* ``equal``: each member calibrated alone (scale + class offsets), calibrated scores summed;
* ``best``: the member with the lowest calibrated held-out cross-entropy, alone;
* ``greedy``: ``FusionClassifier``'s default: members chosen by
  :func:`~devicepool.estimators.fusion.greedy_selection`, then ``equal``.

Conditions are the training mode's test speakers (``neutral``, ``whisper``) and, where
the file has them, the same models on the test speakers' other mode (``N/W``, ``W/N``).

Usage: ``python bench/analyze_fusion_variants.py [SCORES.npz] [--offset-ridge R]`` (default: the H200 run in
``bench/results``). Prints, per variant, the accuracy per corpus and mode and its smallest
margin over the best single member, best first.
"""

import argparse
import inspect
from pathlib import Path

import numpy as np

from devicepool.estimators._linear_fusion import cross_entropy, fit_linear_fusion, fuse
from devicepool.estimators.fusion import FusionClassifier, greedy_selection

DEFAULT = Path(__file__).resolve().parent / "results" / "fusion_variants_h200_scores.npz"
MEMBERS = ("da_cnn", "sa_cnn", "dft_cnn", "gsv_svm")
SUBSETS = [("da_cnn", "dft_cnn", "gsv_svm"), ("da_cnn", "sa_cnn", "gsv_svm"), MEMBERS,
           ("da_cnn", "gsv_svm")]
RULES = [("learned", 1e-4), ("learned", 1e-2), ("learned", 1e-1), ("equal", 1e-4), ("best", 1e-4),
         ("greedy", 1e-4)]
CROSS = {"neutral": "N/W", "whisper": "W/N"}
#: penalty on the class offsets: FusionClassifier's default (``--offset-ridge`` changes it;
#: the analyses before this one used 0, the fitting function's default)
OFFSET_RIDGE = inspect.signature(FusionClassifier).parameters["offset_ridge"].default


def _calibrated(scores, y, n_classes, ridge):
    (a,), b = fit_linear_fusion([scores], y, n_classes, ridge=ridge, offset_ridge=OFFSET_RIDGE)
    return a, b


def fused_test_scores(held, y_train, test, members, rule, ridge):
    """The fused scores of ``test`` (``member -> scores``), the fusion fitted on ``held``."""
    dev = np.flatnonzero(~np.isnan(held[members[0]][:, 0]))
    c = held[members[0]].shape[1]
    if rule == "learned":
        w, b = fit_linear_fusion([held[m][dev] for m in members], y_train[dev], c, ridge=ridge,
                                 offset_ridge=OFFSET_RIDGE)
        return fuse([test[m] for m in members], w, b)
    cal = {m: _calibrated(held[m][dev], y_train[dev], c, ridge) for m in members}
    ce = {m: cross_entropy(a * held[m][dev] + b, y_train[dev]) for m, (a, b) in cal.items()}
    if rule == "greedy":
        keep = greedy_selection([ce[m] for m in members], [cal[m] for m in members],
                                [held[m][dev] for m in members], y_train[dev])
        cal = {members[i]: cal[members[i]] for i in keep}
    if rule in ("equal", "greedy"):
        return sum(a * test[m] + b for m, (a, b) in cal.items())
    return test[min(ce, key=ce.get)]


def main(path):
    z = np.load(path)
    keys = sorted({tuple(k.split("|")[:3]) for k in z.files})
    acc = {}
    for corpus, mode, fold in keys:
        p = f"{corpus}|{mode}|{fold}|"
        y_train = z[p + "y_train"]
        tests = [(mode, "test", z[p + "y_test"])]
        if p + "y_other" in z.files:
            tests.append((CROSS[mode], "other", z[p + "y_other"]))
        for cond, part, y_test in tests:
            test = {m: z[p + f"{part}|{m}"] for m in MEMBERS}
            for m in MEMBERS:
                acc.setdefault((corpus, cond, m), []).append(np.mean(test[m].argmax(1) == y_test))
            for scheme in ("split", "cv3"):
                held = {m: z[p + f"{scheme}|{m}"] for m in MEMBERS}
                for members in SUBSETS:
                    for rule, ridge in RULES:
                        name = (f"{scheme} {rule}{'' if ridge == 1e-4 else ridge} "
                                + "+".join(m.split("_")[0] for m in members))
                        s = fused_test_scores(held, y_train, test, members, rule, ridge)
                        acc.setdefault((corpus, cond, name), []).append(np.mean(s.argmax(1) == y_test))
    conds = sorted({(k[0], k[1]) for k in acc})
    best = [max(100 * np.mean(acc[(*c, m)]) for m in MEMBERS) for c in conds]
    print("best single member:", "  ".join(f"{c[0]}-{c[1]} {b:.1f}" for c, b in zip(conds, best)))
    rows = []
    for name in sorted({k[2] for k in acc} - set(MEMBERS)):
        vals = [100 * np.mean(acc[(*c, name)]) for c in conds]
        rows.append((min(v - b for v, b in zip(vals, best)), name, vals))
    for margin, name, vals in sorted(rows, reverse=True):
        print(f"{name:32s} min margin {margin:+5.1f}  "
              + "  ".join(f"{c[0]}-{c[1]} {v:5.1f}" for c, v in zip(conds, vals)))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores", nargs="?", default=DEFAULT)
    p.add_argument("--offset-ridge", type=float, default=OFFSET_RIDGE)
    args = p.parse_args()
    OFFSET_RIDGE = args.offset_ridge
    main(args.scores)
