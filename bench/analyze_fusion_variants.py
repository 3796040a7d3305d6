"""Fusion variants recomputed from the scores saved by bench_fusion_variants.py.

Usage: ``python bench/analyze_fusion_variants.py [SCORES.npz]`` (default: the H200 run in
``bench/results``). Prints, per variant, the accuracy per corpus and mode and its smallest
margin over the best single member (sorted by that margin).
"""

import sys
from pathlib import Path

import numpy as np

from devicepool.estimators._linear_fusion import cross_entropy, fit_linear_fusion, fuse

DEFAULT = Path(__file__).resolve().parent / "results" / "fusion_variants_h200_scores.npz"
z = np.load(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
keys = sorted({tuple(k.split("|")[:3]) for k in z.files})
M = ("da_cnn", "sa_cnn", "dft_cnn", "gsv_svm")
def variant(held, ytr, test, members, how, ridge=1e-4):
    dev = np.flatnonzero(~np.isnan(held[members[0]][:, 0]))
    C = held[members[0]].shape[1]
    if how == "learned":
        w, b = fit_linear_fusion([held[m][dev] for m in members], ytr[dev], C, ridge=ridge)
        return fuse([test[m] for m in members], w, b)
    if how == "equal":  # each member calibrated alone, then summed
        zt = 0
        for m in members:
            (a,), b = fit_linear_fusion([held[m][dev]], ytr[dev], C, ridge=ridge)
            zt = zt + a * test[m] + b
        return zt
    if how == "best":
        ces = []
        for m in members:
            (a,), b = fit_linear_fusion([held[m][dev]], ytr[dev], C, ridge=ridge)
            ces.append(cross_entropy(a * held[m][dev] + b, ytr[dev]))
        return test[members[int(np.argmin(ces))]]
res = {}
for corpus, mode, fold in keys:
    p = f"{corpus}|{mode}|{fold}|"
    ytr, yte = z[p + "y_train"], z[p + "y_test"]
    test = {m: z[p + f"test|{m}"] for m in M}
    for m in M:
        res.setdefault((corpus, mode, m), []).append(np.mean(test[m].argmax(1) == yte))
    for scheme in ("split", "cv3"):
        held = {m: z[p + f"{scheme}|{m}"] for m in M}
        for members in [("da_cnn","dft_cnn","gsv_svm"), ("da_cnn","sa_cnn","gsv_svm"), M, ("da_cnn","gsv_svm"), ("da_cnn","sa_cnn","dft_cnn","gsv_svm")]:
            for how, ridge in [("learned",1e-4), ("learned",1e-2), ("learned", 1e-1), ("equal",1e-4), ("best",1e-4)]:
                name = f"{scheme} {how}{'' if ridge==1e-4 else ridge} {'+'.join(x.split('_')[0] for x in members)}"
                zz = variant(held, ytr, test, members, how, ridge)
                res.setdefault((corpus, mode, name), []).append(np.mean(zz.argmax(1) == yte))
names = sorted({k[2] for k in res})
conds = sorted({(k[0], k[1]) for k in res})
print("cond best-member:", {c: max(100*np.mean(res[(c[0], c[1], m)]) for m in M) for c in conds})
rows = []
for n in names:
    vals = [100*np.mean(res[(c[0], c[1], n)]) for c in conds]
    best = [max(100*np.mean(res[(c[0], c[1], m)]) for m in M) for c in conds]
    margin = min(v - b for v, b in zip(vals, best))
    rows.append((margin, n, vals))
for margin, n, vals in sorted(rows, reverse=True)[:25]:
    print(f"{n:40s} min margin {margin:+5.1f}  " + "  ".join(f"{c[0][:4]}-{c[1][0]} {v:5.1f}" for c, v in zip(conds, vals)))
