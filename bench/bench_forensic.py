"""Benchmark 6: the forensic validation protocol (LRs and open set on unseen devices).

``devicepool.protocol.fit_forensic`` + ``ForensicFits.evaluate`` (what
``run_forensic_protocol`` runs): 3 device folds (12 devices: 8 seen by the network, 4
unseen), per fold disjoint calibration and test speakers; the LR system is calibrated
on unseen-device pairs of the calibration speakers and measured on unseen-device pairs
of the test speakers; open set: threshold at FAR 5 % on the calibration speakers'
unseen-device recordings, measured on the test speakers. Mean ± std over the folds
(population std). One network fit per fold serves every scorer and calibrator
compared (they are fitted on the stored embeddings).

Corpora (both speaking modes, so each mode's run also measures the other mode as
questioned recordings against references in its own):

* ``embedded``: ``make_device_corpus(n_devices=12, n_speakers=12, n_utterances=6)``;
* ``fsdd``: ``make_device_corpus(n_devices=12, source=../shared/data/fsdd/recordings,
  n_utterances=8)`` -- the 6 real FSDD speakers.

Extras (embedded corpus, neutral; what else was tried against the targets): SA-CNN and
DFT-CNN embeddings, DA-CNN with 6 device folds (10 seen devices), DA-CNN on 3 s recordings.

Usage (from the repository root)::

    python bench/bench_forensic.py                 # everything (22 min on 2 busy cores)
    python bench/bench_forensic.py --quick         # a smoke run of seconds
    python bench/bench_forensic.py --corpus embedded --modes neutral --extras ""
"""

from __future__ import annotations

import argparse
import json
import time

from _common import RESULTS, ROOT, SHARED, load_average, machine_description, print_machine

#: (name, ForensicFits.evaluate parameters); the first is the library's default system
SYSTEMS = (
    ("plda+logistic", {}),
    ("plda+isotonic", {"calibration": "isotonic"}),
    ("cosine+logistic", {"scoring": "cosine"}),
    ("cosine+isotonic", {"scoring": "cosine", "calibration": "isotonic"}),
    ("plda(lda)+logistic", {"lda_dim": "auto"}),
    ("cosine(lda)+logistic", {"scoring": "cosine", "lda_dim": "auto"}),
    ("plda+logistic, 10 refs", {"n_references": 10}),
    ("cosine+logistic, 10 refs", {"scoring": "cosine", "n_references": 10}),
    ("plda+logistic, margin", {"open_set_score": "margin"}),
)
EXTRA_SYSTEMS = ("plda+logistic", "cosine+logistic", "cosine+logistic, 10 refs")
#: issue 12's targets on the embedded corpus, matched mode, unseen devices
TARGETS = {"eer": 0.05, "cllr": 0.2}
EXTRAS = {
    "sa_cnn": ("SA-CNN embeddings", {"model": "sa_cnn"}, {}),
    "dft_cnn": ("DFT-CNN embeddings", {"model": "dft_cnn"}, {}),
    "folds6": ("DA-CNN, 6 device folds (10 seen, 2 unseen devices per fold)", {"n_splits": 6}, {}),
    "long": ("DA-CNN, 3 s recordings", {}, {"duration": 3.0}),
}


def corpus_settings(name, quick):
    if quick:
        return {"n_devices": 6, "n_speakers": 4, "n_utterances": 2}
    if name == "embedded":
        return {"n_devices": 12, "n_speakers": 12, "n_utterances": 6}
    if name == "fsdd":
        return {"n_devices": 12, "source": str(SHARED / "fsdd" / "recordings"), "n_utterances": 8}
    raise SystemExit(f"unknown corpus {name!r} (embedded, fsdd)")


def make_corpus(settings, seed, modes=("neutral", "whisper")):
    from devicepool import make_device_corpus

    return make_device_corpus(**settings, modes=modes, random_state=seed)


def row(name, s):
    """A Markdown row of the LR measures of a summary (mean ± std over folds)."""
    cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in ("cllr", "cllr_min", "cllr_cal")]
    cells += [f"{100 * s[m]['mean']:.1f} ± {100 * s[m]['std']:.1f}" if m in s else "-"
              for m in ("eer", "misleading_h1", "misleading_h2")]
    return f"| {name} | " + " | ".join(cells) + " |"


def open_row(name, res, prefix=""):
    s = res.summary
    keys = ("known_accuracy", "unknown_rejection", "far", "known_rejection", "closed_set_accuracy")
    return f"| {name} | " + " | ".join(
        f"{100 * s[prefix + k]['mean']:.1f} ± {100 * s[prefix + k]['std']:.1f}" for k in keys) + " |"


LR_HEAD = ["| system | Cllr | Cllr_min | Cllr_cal | EER % | H1 with LR < 1 % | H2 with LR > 1 % |",
           "|---|---|---|---|---|---|---|"]
OPEN_HEAD = ["| open set | known accuracy % | unknown rejected % | FAR % | known rejected % "
             "| closed-set accuracy % |", "|---|---|---|---|---|---|"]


def cross_lines(res):
    if "mismatched_eer" not in res.summary:
        return []
    cm = res.folds[0]["cross_mode"]
    lines = ["", f"Mode mismatch (questioned {cm['questioned_mode']}, references {cm['reference_mode']}; "
             "the same pairs built in the matched mode beside it):", "", *LR_HEAD]
    for part in ("matched", "mismatched"):
        s = {k[len(part) + 1:]: v for k, v in res.summary.items() if k.startswith(part + "_")}
        lines.append(row(f"{part}, plda+logistic", s))
    lines += ["", *OPEN_HEAD, open_row(f"questioned {cm['questioned_mode']}", res, "mismatched_open_")]
    return lines


def section(title, results, elapsed, fits):
    st = fits.settings
    fit_s = [round(o.fit_seconds, 1) for o in fits.outputs]
    lines = [f"### {title}", "",
             f"{st['corpus']['n_utterances']} recordings ({st['corpus']['n_devices']} devices, "
             f"{st['corpus']['n_speakers']} speakers, modes {st['corpus']['modes']}); model "
             f"`{st['model']}` {st['model_params'] or '(library defaults)'}; {st['n_splits']} device "
             f"folds; fits {fit_s} s (threads per fit {[o.threads for o in fits.outputs]}); "
             f"{elapsed:.0f} s in all.", "", *LR_HEAD]
    lines += [row(name, res.summary) for name, res in results.items() if "margin" not in name]
    default = next(iter(results.values()))
    lines += ["", *OPEN_HEAD, open_row("max_proba", default)]
    if "plda+logistic, margin" in results:
        lines.append(open_row("margin", results["plda+logistic, margin"]))
    lines += cross_lines(default)
    return "\n".join(lines) + "\n"


def save_plots(res, stem):
    from devicepool.forensic import plot_det, plot_ece, plot_tippett

    folder = ROOT / "docs" / "img"
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in (("tippett", plot_tippett), ("det", plot_det), ("ece", plot_ece)):
        label = {"tippett": "Tippett", "det": "DET", "ece": "ECE"}[name]
        ax = draw(res.llr, res.y, title=f"{label}: {stem}, unseen devices")
        ax.figure.savefig(folder / f"forensic-{stem.replace(', ', '-')}-{name}.png", dpi=90)


def enrolled_backend(fits):
    """The pitfall, measured: the scorer's background also holds the fold's unseen devices
    (their calibration-speaker recordings), so the LDA + PLDA back end is trained on the
    very devices the test pairs compare. Test pairs as in the protocol. Not a valid
    unseen-device figure: it shows what a validation that lets the test devices into
    any fitted part reports."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from devicepool.forensic import DeviceLR, cllr, cllr_min, eer

    values = {"cllr": [], "cllr_min": [], "cllr_cal": [], "eer": []}
    for s, out in zip(fits.splits, fits.outputs):
        dev, spk = fits.devices[out.index], fits.speakers[out.index]
        in_mode = fits.modes[out.index] == fits.mode
        cal = in_mode & np.isin(spk, s.calibration_speakers)
        unseen_cal = cal & np.isin(dev, s.unseen_devices)
        test = in_mode & np.isin(spk, s.test_speakers) & np.isin(dev, s.unseen_devices)
        E = out.embeddings
        with threadpool_limits(1, user_api="blas"):
            lr = DeviceLR(lda_dim=len(set(dev[cal])) - 1, random_state=s.lr_seed).fit(
                E[unseen_cal], dev[unseen_cal], spk[unseen_cal], X_background=E[cal],
                devices_background=dev[cal])
            llr, y = lr.pair_llrs(E[test], dev[test], spk[test])
        for name, f in (("cllr", cllr), ("cllr_min", cllr_min), ("eer", eer)):
            values[name].append(f(llr, y))
        values["cllr_cal"].append(values["cllr"][-1] - values["cllr_min"][-1])
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
            for k, v in values.items()}


def device_pairs(fits):
    """Per (questioned device, reference device): mean log10 LR of the default system's test
    pairs and the share above 0. The pairs are rebuilt as ``DeviceLR.pair_llrs`` builds
    them (same generator; checked against its hypotheses), to name their devices."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from devicepool.forensic import DeviceLR
    from devicepool.forensic._pairs import make_pairs

    cells = {}
    for s, out in zip(fits.splits, fits.outputs):
        dev, spk, E = fits.devices[out.index], fits.speakers[out.index], out.embeddings
        in_mode = fits.modes[out.index] == fits.mode
        cal, unseen = np.isin(spk, s.calibration_speakers), np.isin(dev, s.unseen_devices)
        bg, calm, test = in_mode & cal & ~unseen, in_mode & cal & unseen, in_mode & ~cal & unseen
        with threadpool_limits(1, user_api="blas"):
            lr = DeviceLR(random_state=s.lr_seed).fit(E[calm], dev[calm], spk[calm], X_background=E[bg],
                                                      devices_background=dev[bg])
            llr, y = lr.pair_llrs(E[test], dev[test], spk[test])
        p = make_pairs(dev[test], spk[test], n_references=3, max_pairs=20000,
                       rng=np.random.default_rng(s.lr_seed))
        assert np.array_equal(p.y, y), "pairs rebuilt differently"
        qd, rd = dev[test][p.questioned], dev[test][p.ref_index[p.ref_ptr[:-1]]]
        for a, b in sorted(set(zip(qd, rd))):
            m = (qd == a) & (rd == b)
            cells[f"{a}|{b}"] = {"mean_llr": float(llr[m].mean()), "above_0": float(np.mean(llr[m] > 0)),
                                 "n": int(m.sum()), "fold": s.fold}
    return cells


def device_pair_lines(cells):
    diff = sorted(((k, v) for k, v in cells.items() if k.split("|")[0] != k.split("|")[1]),
                  key=lambda kv: -kv[1]["mean_llr"])
    lines = ["Different-device test pairs by devices (plda+logistic), most confusable first "
             "(questioned device / reference device):", "",
             "| fold | questioned | reference | pairs | mean log10 LR | LR > 1 (%) |",
             "|---|---|---|---|---|---|"]
    for k, v in diff[:8]:
        a, b = k.split("|")
        lines.append(f"| {v['fold']} | {a} | {b} | {v['n']} | {v['mean_llr']:+.2f} | "
                     f"{100 * v['above_0']:.0f} |")
    same = [v["mean_llr"] for k, v in cells.items() if k.split("|")[0] == k.split("|")[1]]
    lines += ["", f"({len(diff)} device pairs in all; same-device pairs: mean log10 LR per device "
              f"from {min(same):+.2f} to {max(same):+.2f}.)"]
    return lines


def run_one(corpus, seed, n_jobs, params, systems, **fit_kw):
    """Fit once, evaluate every system: (fits, {name: result}, seconds)."""
    from devicepool.protocol import fit_forensic

    t0 = time.perf_counter()
    fits = fit_forensic(corpus, random_state=seed, n_jobs=n_jobs, progress=False,
                        model_params=params, **fit_kw)
    results = {name: fits.evaluate(**kw) for name, kw in SYSTEMS if name in systems}
    return fits, results, time.perf_counter() - t0


LR_MEASURES = ("cllr", "cllr_min", "cllr_cal", "eer", "misleading_h1", "misleading_h2")


def record(fits, results, elapsed):
    """The default system in full; the others' LR measures (and, where the open-set score
    differs, their open-set measures)."""
    default = next(iter(results.values()))
    systems = {}
    for name, r in results.items():
        keep = [k for k in r.summary if k in LR_MEASURES or "margin" in name]
        systems[name] = {"summary": {k: r.summary[k] for k in keep}, "pooled": r.pooled,
                         "system": r.settings["system"]}
    return {"seconds": elapsed, "settings": fits.settings, "default": default.to_dict(),
            "systems": systems, "load_average": load_average()}


def _rounded(value, digits=6):
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def save(name, payload):
    """``bench/results/<name>.json``: floats to 6 significant digits, one line per run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = _rounded(payload)
    parts = []
    for key, value in data.items():
        if isinstance(value, dict) and key in ("runs", "extras"):
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"{json.dumps(key)}: {{\n{inner}\n}}")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    (RESULTS / f"{name}.json").write_text("{\n" + ",\n".join(parts) + "\n}\n")


def target_lines(res):
    eer, c = res.summary["eer"], res.summary["cllr"]
    return [f"Targets (embedded corpus, neutral, unseen devices, plda+logistic): EER "
            f"{100 * eer['mean']:.1f} % (target ≤ {100 * TARGETS['eer']:.0f} %, distance "
            f"{100 * (eer['mean'] - TARGETS['eer']):+.1f} points); Cllr {c['mean']:.3f} "
            f"(target ≤ {TARGETS['cllr']}, distance {c['mean'] - TARGETS['cllr']:+.3f})."]


def main_runs(args, params, payload, md):
    names = [n for n, _ in SYSTEMS]
    for cname in [c for c in args.corpus.split(",") if c]:
        settings = corpus_settings(cname, args.quick)
        corpus = make_corpus(settings, args.seed)
        for mode in [m for m in args.modes.split(",") if m]:
            fits, results, elapsed = run_one(corpus, args.seed, args.n_jobs, params, names, mode=mode)
            key = f"{cname}/{mode}"
            payload["runs"][key] = {"corpus": settings, **record(fits, results, elapsed)}
            md.append(section(f"{cname} corpus, {mode}", results, elapsed, fits))
            default = results["plda+logistic"]
            if cname == "embedded" and mode == "neutral":
                leak = enrolled_backend(fits)
                payload["runs"][key]["enrolled_backend_pitfall"] = leak
                md.append("\n".join(target_lines(default)) + "\n")
                md.append("\n".join([
                    "Pitfall, not a valid figure: the unseen devices' calibration recordings added "
                    "to the scorer's background (LDA + PLDA trained on the devices the test pairs "
                    "compare; the network still never saw them):", "", *LR_HEAD,
                    row("plda(lda)+logistic, enrolled back end", leak)]) + "\n")
                cells = device_pairs(fits)
                payload["runs"][key]["device_pairs"] = cells
                md.append("\n".join(device_pair_lines(cells)) + "\n")
            if mode == "neutral" and not args.no_plots:
                save_plots(default, f"{cname}, {mode}")
            print(f"[{time.strftime('%H:%M:%S')}] {key}: {elapsed:.0f} s, EER "
                  f"{100 * default.mean('eer'):.1f} %, Cllr {default.mean('cllr'):.3f}", flush=True)
            save(args.name, payload)


def extra_runs(args, params, payload, md):
    for key in [e for e in args.extras.split(",") if e]:
        title, fit_kw, corpus_kw = EXTRAS[key]
        settings = {**corpus_settings("embedded", args.quick), **corpus_kw}
        corpus = make_corpus(settings, args.seed, modes=("neutral",))
        fit_kw = dict(fit_kw)
        if args.quick and "n_splits" in fit_kw:
            fit_kw["n_splits"] = 3
        model_params = params if fit_kw.get("model", "da_cnn") == "da_cnn" else {}
        if args.quick:
            model_params = {"max_steps": 20}
        fits, results, elapsed = run_one(corpus, args.seed, args.n_jobs, model_params,
                                         EXTRA_SYSTEMS, mode="neutral", **fit_kw)
        payload["extras"][key] = {"title": title, "corpus": settings, **record(fits, results, elapsed)}
        md.append(section(f"tried: {title} (embedded corpus, neutral)", results, elapsed, fits))
        print(f"[{time.strftime('%H:%M:%S')}] extra {key}: {elapsed:.0f} s, EER "
              f"{100 * results['plda+logistic'].mean('eer'):.1f} %", flush=True)
        save(args.name, payload)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="embedded,fsdd")
    p.add_argument("--modes", default="neutral,whisper")
    p.add_argument("--extras", default=",".join(EXTRAS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--params", default="{}", help='DA-CNN parameters, e.g. \'{"max_steps": 200}\'')
    p.add_argument("--quick", action="store_true", help="tiny corpora and 20 steps: a smoke run")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--name", default=None, help="result file stem (default forensic)")
    args = p.parse_args(argv)
    import torch

    params = json.loads(args.params)
    if args.quick:
        params = {"max_steps": 20, **params}
        args.no_plots = True
    args.name = args.name or ("forensic_quick" if args.quick else "forensic")
    desc = machine_description()
    print_machine(desc)
    payload = {"benchmark": "forensic", "machine": desc, "seed": args.seed, "n_jobs": args.n_jobs,
               "torch_threads_main": torch.get_num_threads(), "model_params": params,
               "targets": TARGETS, "runs": {}, "extras": {}}
    md = [f"# Forensic validation benchmark (seed {args.seed}, {args.n_jobs} parallel fits)\n"]
    t0 = time.perf_counter()
    main_runs(args, params, payload, md)
    extra_runs(args, params, payload, md)
    payload["total_seconds"] = time.perf_counter() - t0
    md.append(f"Total: {payload['total_seconds']:.0f} s.\n")
    save(args.name, payload)
    (ROOT / "bench" / "results" / f"{args.name}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
