"""The pretrained device embedding on devices and speakers it never saw.

Corpora (the same as ``bench_forensic.py``; the pretrained embedding heard none of their
12 microphones):

* ``embedded``: ``make_device_corpus(n_devices=12, n_speakers=12, n_utterances=6)``,
  synthetic speakers drawn from another seed than the pretraining speakers;
* ``fsdd``: ``make_device_corpus(n_devices=12, source=shared/data/fsdd/recordings,
  n_utterances=8)``; the questioned speakers are the FSDD speakers the pretraining left
  out (``george``, ``lucas``, ``yweweler``), the others only enrol.

Folds: ``forensic_splits(..., n_splits=3, random_state=0)`` (as the forensic protocol).
Nothing is trained on the corpus but the ``closed_set_full`` logistic regression.

Usage::

    python bench/bench_pretrained.py [--bundle PATH] [--corpus embedded,fsdd] [--tag TAG]

Writes ``bench/results/pretrained[_TAG].json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import SHARED, machine_description, save_results  # noqa: E402

HELD_OUT_FSDD = ("george", "lucas", "yweweler")
#: the FSDD speakers the pretraining heard (for the diagnostic --fsdd-questioned pretraining)
PRETRAINING_FSDD = ("jackson", "nicolas", "theo")

ROWS = [
    ("neutral.eer", "EER, neutral", True), ("neutral.cllr", "Cllr, neutral", False),
    ("neutral.cllr_min", "Cllr_min, neutral", False),
    ("neutral.same_lr_below_1", "same-device LR < 1, neutral", True),
    ("neutral.diff_lr_above_1", "different-device LR > 1, neutral", True),
    ("whisper.eer", "EER, whisper", True), ("whisper.cllr", "Cllr, whisper", False),
    ("whisper_vs_neutral.eer", "EER, whispered questioned vs neutral references", True),
    ("whisper_vs_neutral.cllr", "Cllr, whispered questioned vs neutral references", False),
    ("open_set.known_accuracy_at_far", "open set (3 enrolment recordings): known accuracy at 5 % FAR", True),
    ("open_set.known_accuracy_at_lr1", "open set: known accuracy at LR > 1", True),
    ("open_set.far_at_lr1", "open set: false acceptance at LR > 1", True),
    ("closed_set_enrol", "closed set, 3 enrolment recordings per device", True),
]


def corpus_for(name, seed=0, fsdd_questioned=HELD_OUT_FSDD):
    from devicepool import make_device_corpus

    if name == "embedded":
        return make_device_corpus(n_devices=12, n_speakers=12, n_utterances=6, random_state=seed), None
    if name == "fsdd":
        return (make_device_corpus(n_devices=12, source=str(SHARED / "fsdd" / "recordings"), n_utterances=8,
                                   random_state=seed), fsdd_questioned)
    raise SystemExit(f"unknown corpus {name!r} (embedded, fsdd)")


def table(results):
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label, pct in ROWS:
        cells = []
        for n in names:
            m = results[n]["summary"].get(key)
            if m is None:
                cells.append("–")
            else:
                f = 100.0 if pct else 1.0
                cells.append(f"{m[0] * f:.{1 if pct else 3}f} ± {m[1] * f:.{1 if pct else 3}f}"
                             + (" %" if pct else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    full = [np.asarray(results[n]["closed_set_full"]) for n in names]
    cells = [f"{100 * a.mean():.1f} ± {100 * a.std():.1f} %" for a in full]
    lines.append("| closed set, logistic regression on the training folds (speaker 3-fold) | "
                 + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed(emb, args):
    from _common import best_of, speech_utterances

    from devicepool import FilterBank

    X, _source = speech_utterances(100, seconds=2.0)
    seconds = 100 * 2.0
    fb = FilterBank(n_mels=emb.n_mels_)
    t_fb, _, _ = best_of(lambda: fb.fit_transform(X))
    t_all, _, _ = best_of(lambda: emb.transform(X))
    doc = {"threads": args.threads, "audio_s": seconds, "filterbank_s": t_fb, "embedding_s": t_all,
           "x_real_time": seconds / t_all, "filterbank_x_real_time": seconds / t_fb,
           "embedding_over_filterbank": t_all / t_fb}
    print(f"{args.threads} thread(s): {seconds / t_all:.0f}x real time (FilterBank alone "
          f"{seconds / t_fb:.0f}x; the embedding costs {t_all / t_fb:.1f}x the FilterBank)")
    save_results(f"pretrained_speed{'_' + args.tag if args.tag else ''}",
                 {"machine": machine_description(), "bundle": args.bundle or "shipped", **doc})


def main(argv=None):
    import torch

    from devicepool.estimators.embedding import DeviceEmbedding
    from devicepool.forensic import DeviceLR
    from devicepool.protocol import forensic_splits
    from devicepool.protocol.pretrained_eval import evaluate_pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="embedding bundle (default: the shipped one)")
    p.add_argument("--corpus", default="embedded,fsdd")
    p.add_argument("--tag", default="")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed", action="store_true",
                   help="only measure embedding extraction (x real time, best of 3, this many threads) "
                        "against the FilterBank alone in the same process")
    p.add_argument("--fsdd-questioned", choices=("held_out", "pretraining"), default="held_out",
                   help="FSDD speakers questioned: those the pretraining left out (default), or, as a "
                        "diagnostic of what familiar real speakers are worth, those it heard")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    emb = DeviceEmbedding(weights=args.bundle).fit()
    if args.speed:
        return speed(emb, args)
    lr = DeviceLR.pretrained(weights=args.bundle, embedder=None)
    results, timing = {}, {}
    for name in args.corpus.split(","):
        fsdd_q = HELD_OUT_FSDD if args.fsdd_questioned == "held_out" else PRETRAINING_FSDD
        corpus, held_out = corpus_for(name, fsdd_questioned=fsdd_q)
        t0 = time.perf_counter()
        E = emb.transform(corpus.data)
        dt = time.perf_counter() - t0
        seconds = sum(len(x) for x in corpus.data) / corpus.sample_rate
        timing[name] = {"audio_s": seconds, "embed_s": dt, "x_real_time": seconds / dt}
        splits = forensic_splits(corpus.target, corpus.groups, n_splits=3, random_state=0)
        res = evaluate_pretrained(corpus, E, lr, splits, test_speakers=held_out)
        results[name] = res
        print(f"{name}: {len(E)} recordings embedded at {seconds / dt:.0f}x real time",
              flush=True)
    md = table(results)
    print(md)
    save_results(f"pretrained{'_' + args.tag if args.tag else ''}", {
        "machine": machine_description(), "bundle": args.bundle or "shipped",
        "metadata": emb.metadata_, "timing": timing, "results": results, "markdown": md,
        "protocol": "forensic_splits(n_splits=3, random_state=0); corpora of bench_forensic.py; "
                    f"FSDD questioned speakers {args.fsdd_questioned}; threads {args.threads}",
    })


if __name__ == "__main__":
    main()
