"""Benchmark: how long each network must train, on the embedded corpus and on real speech (#21).

Protocol (``devicepool.protocol.run_protocol``): speaker-disjoint 3-fold GroupKFold by
speaker, condition N (and W where asked), utterance-level accuracy, mean ± std over the
folds (population std), seed 0, 2 parallel fits with one torch thread each. Each row is a
network with the library defaults except the overrides it names (``max_steps``, the
internal hold-out ``valid_fraction``, ``patience``...). Corpora as in
``bench_accuracy.py``: ``default`` (6 devices, 9 synthetic speakers) and ``fsdd`` (the same
6 devices, the 6 real FSDD speakers).

Results are appended row by row to ``bench/results/training_length.json`` (a rerun skips
the rows already there), so the run can be stopped and resumed. Each row keeps the
commit it ran on (``git describe --dirty``) and every parameter of its pipeline as run
(``recipe``); its key holds a hash of that recipe, so when a library default changes, the
same overrides make a new row beside the old one. Rows from before the recipe was kept
(0.5's defaults: rectangular DFT, 400 steps for every network) have no ``recipe``.

Usage (from the repository root)::

    python bench/bench_training_length.py                   # the plan below
    python bench/bench_training_length.py --only dft_cnn    # one network's rows
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

from _common import RESULTS, machine_description, print_machine
from bench_accuracy import corpus_for, recipes

#: (network, overrides): the defaults, the 4x-longer selves, and the candidates. The
#: first rows ran at 0.5's defaults (see the module docstring); the last ones at 0.6's.
PLAN = [
    ("dft_cnn", {}), ("dft_cnn", {"max_steps": 1600}),
    ("dft_cnn", {"valid_fraction": 0.0}), ("dft_cnn", {"valid_fraction": 0.0, "max_steps": 1600}),
    ("sa_cnn", {}), ("sa_cnn", {"valid_fraction": 0.0}), ("sa_cnn", {"max_steps": 1600}),
    ("da_cnn", {}), ("da_cnn", {"valid_fraction": 0.0}), ("da_cnn", {"max_steps": 1600}),
    ("dft_cnn", {"valid_fraction": 0.0, "max_steps": 6400}),
    # 0.6: the Hann-windowed DFT and 800 steps are the DFT-CNN's defaults
    ("dft_cnn", {}), ("dft_cnn", {"max_steps": 3200}),
    ("dft_cnn", {"max_steps": 400}),  # the Hann window at 0.5's budget
    # 0.6: SA-/DA-CNN normalise each utterance's level and tilt (utterance_norm=2)
    ("sa_cnn", {}), ("sa_cnn", {"max_steps": 1600}),
    ("da_cnn", {}), ("da_cnn", {"max_steps": 1600}),
]
OUT = RESULTS / "training_length.json"


def row_key(corpus, model, params, conditions, recipe, seed):
    digest = hashlib.sha1(json.dumps([recipe, seed], sort_keys=True).encode()).hexdigest()[:10]
    return f"{corpus}|{model}|{json.dumps(params, sort_keys=True)}|{','.join(conditions)}|{digest}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="fsdd,default")
    p.add_argument("--conditions", default="N")
    p.add_argument("--only", default="", help="networks to run (comma-separated; default all)")
    p.add_argument("--plan", default="", help="JSON list of [network, overrides] replacing the plan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)

    from devicepool.protocol import run_protocol

    desc = machine_description()
    print_machine(desc)
    done = json.loads(OUT.read_text()) if OUT.exists() else {"machine": desc, "rows": {}}
    plan = [tuple(x) for x in json.loads(args.plan)] if args.plan else PLAN
    only = {m for m in args.only.split(",") if m}
    conditions = args.conditions.split(",")
    for cname in args.corpus.split(","):
        corpus = corpus_for(cname, args.seed)
        if corpus is None:
            print(f"skipping {cname}: no FSDD recordings")
            continue
        for model, params in plan:
            recipe = recipes([model], corpus.sample_rate, {model: params}).get(model, {})
            recipe = {k: v for k, v in recipe.items() if k != "clf__random_state"}
            key = row_key(cname, model, params, conditions, recipe, args.seed)
            if (only and model not in only) or key in done["rows"]:
                continue
            t0 = time.perf_counter()
            res = run_protocol(corpus, models=[model], conditions=conditions, random_state=args.seed,
                               model_params={model: params} if params else None, n_jobs=args.n_jobs,
                               progress=False, report=False)
            row = {"corpus": cname, "model": model, "params": params, "seed": args.seed,
                   "git": desc.get("git_commit"), "recipe": recipe,
                   "seconds": time.perf_counter() - t0,
                   "fit_seconds": [r["fit_seconds"] for r in res.records],
                   "summary": {c: [res.summary[(model, c)]["mean"], res.summary[(model, c)]["std"]]
                               for c in conditions},
                   "per_fold": {c: [r["accuracy"] for r in res.records if r["condition"] == c]
                                for c in conditions}}
            done["rows"][key] = row
            OUT.write_text(json.dumps(done, indent=1))
            accs = "  ".join(f"{c} {m:.1f} ± {s:.1f}" for c, (m, s) in row["summary"].items())
            fit = sum(row["fit_seconds"]) / len(row["fit_seconds"])
            print(f"{cname:8s} {model:8s} {json.dumps(params):45s} {accs}  fit {fit:.0f} s/fold", flush=True)


if __name__ == "__main__":
    main()
