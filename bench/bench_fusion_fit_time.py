"""Benchmark: the fusion's fit time against the sum of its members' fits (issue #19).

One speaker fold of ``GroupKFold(3)`` on the default embedded corpus
(``make_device_corpus()``), one torch thread: every member's whole pipeline
(``get_model(name).make_pipeline``, waveforms in) and then the registered ``fusion`` are
fitted with the speakers (``fit_with_groups``) and timed; the held-out speakers' scores
are saved, so two runs (two versions of the library, other settings) can be compared
bit for bit.

Usage::

    python bench/bench_fusion_fit_time.py --out after.json [--max-steps 100] [--fusion '{"cv": 3}']
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--max-steps", type=int, default=None, help="the networks' max_steps (default: theirs)")
    p.add_argument("--models", default="da_cnn,dft_cnn,gsv_svm,fusion")
    p.add_argument("--fusion", default="{}", help="JSON parameters of the fusion, e.g. '{\"cv\": 3}'")
    args = p.parse_args(argv)

    import torch
    from sklearn.model_selection import GroupKFold

    from devicepool.datasets import make_device_corpus
    from devicepool.estimators import fit_with_groups
    from devicepool.protocol import get_model

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    c = make_device_corpus()
    train, test = next(GroupKFold(3).split(c.data, c.target, c.groups))
    X, X_test = [c.data[i] for i in train], [c.data[i] for i in test]
    res = {"max_steps": args.max_steps, "fusion_params": json.loads(args.fusion), "n_train": len(train)}
    for name in args.models.split(","):
        spec = get_model(name)
        params = {"max_steps": args.max_steps} if args.max_steps and spec.accepts("max_steps") else {}
        if name == "fusion":
            params.update(res["fusion_params"])
        pipe = spec.make_pipeline(c.sample_rate, random_state=0, **params)
        t0 = time.perf_counter()
        fit_with_groups(pipe, X, c.target[train], c.groups[train])
        fit_s = time.perf_counter() - t0
        score = pipe.predict_proba if hasattr(pipe, "predict_proba") else pipe.decision_function
        scores = score(X_test)
        pred = pipe.predict(X_test)
        res[name] = {"fit_s": round(fit_s, 2), "accuracy": float(np.mean(pred == c.target[test])),
                     "scores": np.asarray(scores).tolist()}
        print(f"{name}: fit {fit_s:.1f} s, held-out accuracy {res[name]['accuracy']:.4f}", flush=True)
    members = [m for m in res if m in args.models.split(",") and m != "fusion"]
    if "fusion" in res and members:
        total = sum(res[m]["fit_s"] for m in members)
        print(f"fusion / sum of members' fits: {res['fusion']['fit_s'] / total:.2f}")
    with open(args.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
