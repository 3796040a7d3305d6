"""Benchmark 5: accuracy of every model with library defaults, beside classical references.

Protocol (``devicepool.protocol.run_protocol``): speaker-disjoint 3-fold GroupKFold by
speaker, utterance-level accuracy, mean ± std over the folds (population std), conditions
N, W, N/W, W/N (one fit per training mode and fold serves the matched and the mismatched
test). Every model uses its **library defaults** (no overrides) unless ``--params`` says
otherwise; the networks get the speakers of their training part (``fit(..., groups=...)``)
for their speaker-disjoint internal validation.

Corpora:

* ``default``: ``make_device_corpus(random_state=SEED)`` -- 6 devices, 9 synthetic
  speakers x 8 utterances x {neutral, whisper}, 1.5 s (432 recordings per mode);
* ``fsdd``: ``make_device_corpus(source=../shared/data/fsdd/recordings, random_state=SEED)``
  -- the same 6 devices, the 6 real FSDD speakers x 8 utterances x {neutral, LPC-whisper}.

References, run on the same folds in the same protocol call (``bench/_references.py``):
``logreg_meanstd`` and ``svm_percentiles`` (Hanilci). The library's classical systems
(``gsv_svm``, ``gmm_ubm``) and the ``fusion`` are registered models: name them in
``--models`` (``--models da_cnn,sa_cnn,dft_cnn,gsv_svm,gmm_ubm,fusion``).
Rows ``<network>+modeaug`` are the network trained with devicepool's mode augmentation
(``run_protocol(mode_augmentation=True)``), an extension beyond the paper; with
``--augmentation-direction vocalise`` the rows are ``<network>+vocalise`` (only the
whispered training recordings get a copy).

Fits run in parallel processes (``--n-jobs``, default 2) with one torch thread each
(joblib limits each worker to ``cpu_count / n_jobs`` threads); fit times are per fold.

Usage (from the repository root)::

    python bench/bench_accuracy.py                              # both corpora, all models
    python bench/bench_accuracy.py --corpus default --models da_cnn --conditions N,W
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS, SHARED, load_average, machine_description, print_machine, save_results
from _references import REFERENCES, register_references

NETWORKS = ("da_cnn", "sa_cnn", "dft_cnn")


def corpus_for(name, seed):
    from devicepool import make_device_corpus

    if name == "default":
        return make_device_corpus(random_state=seed)
    if name == "fsdd":
        source = SHARED / "fsdd" / "recordings"
        if not source.is_dir():
            return None
        return make_device_corpus(source=str(source), random_state=seed)
    raise SystemExit(f"unknown corpus {name!r} (default, fsdd)")


def recipes(models, sample_rate, params):
    """Every parameter of each registered model's pipeline as run (``repr`` of each value,
    nested estimators included): what changes a figure beside the versions and threads."""
    from devicepool.protocol import get_model

    out = {}
    for m in models:
        try:
            pipe = get_model(m.removesuffix("+modeaug")).make_pipeline(sample_rate, **params.get(m, {}))
        except (ValueError, TypeError):  # a reference or a factory that is no template
            continue
        out[m] = {k: repr(v) for k, v in pipe.get_params(deep=True).items()
                  if not hasattr(v, "get_params")}
    return out


def table(result, models):
    """Markdown: mean ± std (%) per condition and the mean fit time per fold (s)."""
    from devicepool.protocol import CONDITIONS

    conds = [c for c in CONDITIONS if c in result.conditions]
    fit_s = {}
    for r in result.records:
        fit_s.setdefault(r["model"], {})[(r["train_mode"], r["fold"])] = r["fit_seconds"]
    lines = ["| model | " + " | ".join(conds) + " | fit s / fold |",
             "|---|" + "---|" * (len(conds) + 1)]
    for m in models:
        cells = []
        for c in conds:
            s = result.summary.get((m, c))
            cells.append("-" if s is None else f"{s['mean']:.1f} ± {s['std']:.1f}")
        t = list(fit_s.get(m, {}).values())
        mean_fit = f"{np.mean(t):.1f}" if t else "-"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean_fit} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="default,fsdd")
    p.add_argument("--models", default=",".join(NETWORKS))
    p.add_argument("--references", default=",".join(REFERENCES))
    p.add_argument("--conditions", default="N,W,N/W,W/N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--params", default="{}",
                   help='JSON per-model overrides, e.g. \'{"da_cnn": {"max_steps": 300}}\'')
    p.add_argument("--mode-augmentation", default="da_cnn",
                   help="networks also run with run_protocol(mode_augmentation=DIRECTION), as "
                        "rows '<name>+modeaug' ('<name>+vocalise' etc. for one direction; "
                        "comma-separated; '' for none)")
    p.add_argument("--augmentation-direction", default="both",
                   choices=("both", "vocalise", "whisperise"),
                   help="run_protocol's mode_augmentation for those rows")
    p.add_argument("--tag", default="", help="suffix of the result file (ablations)")
    p.add_argument("--fusion", action="append", default=[], metavar="NAME=M1+M2+...",
                   help="register a fusion of registered models under NAME (name it in --models "
                        "too), e.g. fusion_da_gsv=da_cnn+gsv_svm")
    args = p.parse_args(argv)

    from devicepool.protocol import combine_results, get_model, register_model, run_protocol

    register_references()
    for item in args.fusion:
        from devicepool.protocol import FusionFactory

        name, _, members = item.partition("=")
        register_model(name, FusionFactory(members.split("+")), "waveform",
                       "Fusion (" + " + ".join(get_model(m).label for m in members.split("+")) + ")")
    desc = machine_description()
    print_machine(desc)
    nets = [m for m in args.models.split(",") if m]
    refs = [m for m in args.references.split(",") if m]
    conditions = args.conditions.split(",")
    params = json.loads(args.params)
    suffix = "modeaug" if args.augmentation_direction == "both" else args.augmentation_direction
    aug = [f"{m}+{suffix}" for m in args.mode_augmentation.split(",") if m]
    for name, base in zip(aug, [m for m in args.mode_augmentation.split(",") if m]):
        spec = get_model(base)
        register_model(name, spec.factory, feature=spec.feature, label=f"{spec.label} + mode augmentation"
                       + ("" if suffix == "modeaug" else f" ({suffix})"))
    runs = {}
    for name in args.corpus.split(","):
        corpus = corpus_for(name, args.seed)
        if corpus is None:
            print(f"skipping {name}: {SHARED / 'fsdd' / 'recordings'} is absent")
            continue
        t0 = time.perf_counter()
        models = nets + refs
        parts = [run_protocol(corpus, models=models, conditions=conditions, random_state=args.seed,
                              model_params={m: params[m] for m in models if m in params} or None,
                              n_jobs=args.n_jobs, progress=False, report=False)] if models else []
        if aug:
            parts.append(run_protocol(corpus, models=aug, conditions=conditions,
                                      random_state=args.seed, n_jobs=args.n_jobs, progress=False,
                                      report=False, mode_augmentation=args.augmentation_direction))
            models = models + aug
        res = combine_results(*parts)
        elapsed = time.perf_counter() - t0
        md = table(res, models)
        n_dev = len(set(map(str, corpus.target)))
        print(f"## {name} corpus ({n_dev} devices, chance {100 / n_dev:.1f} %), {elapsed:.0f} s\n\n{md}")
        runs[name] = {
            "table_markdown": md, "seconds": elapsed, "n_devices": n_dev,
            "n_recordings": len(corpus.data), "models": models, "params": params,
            "summary": {f"{m}|{c}": v for (m, c), v in res.summary.items()},
            "fit_seconds": {r["model"] + "|" + r["train_mode"] + f"|{r['fold']}": r["fit_seconds"]
                            for r in res.records},
            "load_average": load_average(),
            "recipes": recipes(models, int(corpus.sample_rate), params),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_results("accuracy" + (f"_{args.tag}" if args.tag else ""),
                 dict(benchmark="accuracy", machine=desc, seed=args.seed, n_splits=3,
                      n_jobs=args.n_jobs, conditions=conditions, runs=runs))


if __name__ == "__main__":
    main()
