"""Benchmark: does ``devicepool predict`` answer "unknown" for devices the model never heard (#22)?

What ``devicepool train`` then ``predict`` do, on held-out devices and speakers: a registered
network (default ``da_cnn``, library defaults, seed 0) is trained on the recordings of the
*known* devices by the *training* speakers; the open-set gate enrols each known device in
the shipped pretrained device embedding (``devicepool.forensic.EnrolledDevices`` with
``DeviceLR.pretrained()``; its simulated training devices exclude the corpus's
microphones) with references drawn from the same training recordings; a recording whose
best log10 LR against every enrolled device is not above the threshold is "unknown", any
other gets the network's answer. Measured on recordings by the held-out speakers:

* ``unknown``: the share of recordings of the *unseen* devices answered "unknown" (target
  >= 90 %);
* ``known kept``: the share of recordings of the *known* devices answered with their own
  device (neither "unknown" nor wrong; target >= 95 %), beside the network alone.

Folds: the corpus's devices are split into 3 device folds (each unseen once) crossed with
one speaker split (the last third of the speakers, sorted, held out). Both speaking
modes. Variants of the gate: references per device (the first ``k`` training recordings of
each device, speakers interleaved) and the threshold (log10 LR). Written to
``bench/results/open_set_predict.json``.

Usage (from the repository root)::

    python bench/bench_open_set_predict.py                       # embedded corpus, da_cnn
    python bench/bench_open_set_predict.py --corpus fsdd --model gsv_svm
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS, machine_description, print_machine
from bench_accuracy import corpus_for

OUT = RESULTS / "open_set_predict.json"
REFERENCES = (3, 10, 30)
THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="default")
    p.add_argument("--model", default="da_cnn")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from devicepool.estimators import DeviceEmbedding, fit_with_groups
    from devicepool.forensic import UNKNOWN, DeviceLR, EnrolledDevices, enrolment_references
    from devicepool.protocol import get_model

    torch.set_num_threads(1)
    desc = machine_description()
    print_machine(desc)
    corpus = corpus_for(args.corpus, args.seed)
    data = np.empty(len(corpus.data), dtype=object)
    data[:] = list(corpus.data)
    devices, speakers = np.asarray(corpus.target).astype(str), np.asarray(corpus.groups).astype(str)
    uniq_dev, uniq_spk = np.unique(devices), np.unique(speakers)
    test_spk = uniq_spk[-(len(uniq_spk) // 3):]
    is_test = np.isin(speakers, test_spk)
    embed = DeviceEmbedding(sample_rate=int(corpus.sample_rate)).fit()
    t0 = time.perf_counter()
    E = embed.transform(list(data))
    embed_s = time.perf_counter() - t0
    lr = DeviceLR.pretrained(embedder=None)
    spec = get_model(args.model)
    folds = []
    for f, unseen in enumerate(np.array_split(np.random.default_rng(args.seed).permutation(uniq_dev), 3)):
        known = ~np.isin(devices, unseen)
        train = known & ~is_test
        pipe = spec.make_pipeline(int(corpus.sample_rate), random_state=args.seed)
        t0 = time.perf_counter()
        fit_with_groups(pipe, data[train], devices[train], speakers[train])
        fit_s = time.perf_counter() - t0
        kt, ut = known & is_test, ~known & is_test
        net = np.asarray(pipe.predict(data[kt])).astype(str)
        fold = {"fold": f, "unseen": sorted(unseen.tolist()), "fit_seconds": fit_s,
                "n_known_test": int(kt.sum()), "n_unseen_test": int(ut.sum()),
                "network_accuracy": float(np.mean(net == devices[kt])), "gate": {}}
        tr_idx = np.flatnonzero(train)
        for k in REFERENCES:
            ref = tr_idx[enrolment_references(devices[train], speakers[train], k)]
            for thr in THRESHOLDS:
                gate = EnrolledDevices(lr=lr, threshold=thr).fit(E[ref], devices[ref])
                g_known, g_unseen = gate.predict(E[kt]), gate.predict(E[ut])
                kept = (g_known != UNKNOWN) & (net == devices[kt])
                fold["gate"][f"k={k},t={thr:+.1f}"] = {
                    "unknown": float(np.mean(g_unseen == UNKNOWN)), "known_kept": float(np.mean(kept)),
                    "gate_rejects_known": float(np.mean(g_known == UNKNOWN))}
        folds.append(fold)
        print(f"fold {f}: unseen {fold['unseen']}, network {100 * fold['network_accuracy']:.1f} %, "
              f"fit {fit_s:.0f} s", flush=True)
    summary = {}
    for key in folds[0]["gate"]:
        u = [fo["gate"][key]["unknown"] for fo in folds]
        kk = [fo["gate"][key]["known_kept"] for fo in folds]
        summary[key] = {"unknown": [float(np.mean(u)), float(np.std(u))],
                        "known_kept": [float(np.mean(kk)), float(np.std(kk))]}
        print(f"{key:>12}: unknown {100 * np.mean(u):5.1f} ± {100 * np.std(u):4.1f} %   "
              f"known kept {100 * np.mean(kk):5.1f} ± {100 * np.std(kk):4.1f} %")
    done = json.loads(OUT.read_text()) if OUT.exists() else {}
    done[f"{args.corpus}|{args.model}|seed{args.seed}"] = {
        "machine": desc, "corpus": args.corpus, "model": args.model, "seed": args.seed,
        "embedding_seconds": embed_s, "n_recordings": len(data), "test_speakers": test_spk.tolist(),
        "folds": folds, "summary": summary}
    OUT.write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
