"""Benchmark 2: training throughput and FLOP utilisation of SA-CNN, DA-CNN and DFT-CNN.

For each model, on 3 s utterances (300 frames x 24 bands; DFT-CNN: 6 segments x 4001 bins):

* the estimator (``XXXClassifier.fit``, skorch, bucketed batches) for a few epochs, and
* a plain PyTorch loop over the same module (Adam + cross-entropy on pre-built batches,
  the reference that shows the wrapper's overhead),

both as utterances per second. FLOP utilisation = training FLOPs per second (3x the
forward FLOPs of :func:`devicepool.models.forward_flops`: forward + backward ~ 2x forward)
divided by the fp32 matmul peak (best ``torch.matmul`` 2048 x 2048) measured in the same
run, before and after the models. With ``--profile`` the DA-CNN training step is profiled
with ``torch.profiler`` and its parts (CNN, attention LSTMs) are timed on their own.

Usage (from the repository root)::

    python bench/bench_training.py                 # ~5-8 minutes on 2 cores
    python bench/bench_training.py --quick         # smoke run
    python bench/bench_training.py --models da --batch-sizes 16,64,128 --profile
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import (
    RESULTS,
    load_average,
    machine_description,
    matmul_peak_gflops,
    print_machine,
    save_results,
)

MODELS = {"sa": "SACNNClassifier", "da": "DACNNClassifier", "dft": "DFTCNNClassifier"}


def make_data(kind, n, n_classes, seed=0):
    """Random 3 s utterances (the throughput does not depend on the values)."""
    rng = np.random.default_rng(seed)
    shape = (6, 4001) if kind == "dft" else (300, 24)
    if kind == "dft":
        X = [np.abs(rng.standard_normal(shape)).astype(np.float32) for _ in range(n)]
    else:
        X = [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    y = np.arange(n) % n_classes
    return X, y, shape


def forward_flops_per_utterance(module, kind):
    from devicepool.models import forward_flops

    n = 6 if kind == "dft" else 300  # DFT-CNN: 6 segments per 3 s utterance
    return forward_flops(module, n)


def time_estimator(kind, X, y, batch_size, epochs):
    import devicepool.estimators as est

    cls = getattr(est, MODELS[kind])
    # whole utterances and a fixed number of epochs, like the plain loop (the defaults'
    # crops and step budget would make the two process different amounts of data)
    clf = cls(max_epochs=epochs, max_steps=None, crop_frames=None, batch_size=batch_size,
              train_split=None, patience=None, random_state=0)
    t0 = time.perf_counter()
    clf.fit(X, y)
    total = time.perf_counter() - t0
    durs = [float(d) for d in clf.history[:, "dur"]]
    steady = durs[1:] if len(durs) > 1 else durs  # first epoch includes warm-up
    return clf, dict(fit_s=total, epoch_s=durs, utt_per_s=len(X) / float(np.median(steady)))


def time_raw_loop(module, kind, X, y, batch_size, epochs):
    """Plain PyTorch training loop on the estimator's module (fresh Adam)."""
    import torch

    if kind == "dft":  # one sample per segment, as DFTCNNClassifier trains
        segs = np.stack([s for a in X for s in a])[:, None, :]  # (N*6, 1, 4001)
        targets = np.repeat(y, 6)
        data = torch.from_numpy(segs)
        lengths_all = torch.ones(len(segs), dtype=torch.long)
    else:
        data = torch.from_numpy(np.stack(X))
        targets = y
        lengths_all = torch.full((len(X),), data.shape[1], dtype=torch.long)
    target = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    module.train()
    n = data.shape[0]
    epoch_s = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(data[idx], lengths_all[idx]), target[idx])
            loss.backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
    steady = epoch_s[1:] if len(epoch_s) > 1 else epoch_s
    return dict(epoch_s=epoch_s, utt_per_s=len(X) / float(np.median(steady)))


def profile_da(batch_size, steps=6):
    """torch.profiler table of DA-CNN training steps, and its parts timed on their own."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from devicepool.models import DACNN, forward_flops

    torch.manual_seed(0)
    model = DACNN(n_classes=10)
    x = torch.randn(batch_size, 300, 24)
    lengths = torch.full((batch_size,), 300, dtype=torch.long)
    target = torch.arange(batch_size) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x, lengths), target).backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)

    # the parts on their own: CNN stack (forward + backward), the two attention LSTMs
    def timed(fn, reps=5):
        fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    xin = x.unsqueeze(1).requires_grad_(False)

    def cnn_part():
        out, _ = model.cnn(xin, lengths)
        out.sum().backward()

    def lstm_part():
        s = model.attention_time(x, lengths).sum() + model.attention_band(x, lengths).sum()
        s.backward()

    def full_step():
        step()

    flops = forward_flops(model, 300)
    parts = {}
    for name, fn, fwd in (
        ("cnn", cnn_part, flops["conv"]),
        ("attention_lstms", lstm_part, flops["lstm"]),
        ("full_step", full_step, flops["total"]),
    ):
        s = timed(fn)
        parts[name] = dict(seconds_per_batch=s, train_gflops_per_s=3 * fwd * batch_size / s / 1e9,
                           share_of_forward_flops=fwd / flops["total"])
    return table, parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sa,da,dft")
    parser.add_argument("--n-utterances", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,64",
                        help="16 is the estimators' default")
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the run (default: torch's, 1 per core)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="training")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_utterances, args.epochs, args.batch_sizes = 48, 2, "16"

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    desc = machine_description()
    print_machine(desc)
    peak_before = matmul_peak_gflops()
    print(f"fp32 matmul peak (2048^2, best of 7): {peak_before:.1f} GFLOP/s\n")

    rows = []
    print(f"{'model':5s} {'batch':>5s} {'fwd MFLOP/utt':>13s} {'estimator utt/s':>15s} "
          f"{'raw loop utt/s':>14s} {'est/raw':>7s}")
    for kind in args.models.split(","):
        X, y, shape = make_data(kind, args.n_utterances, args.n_classes)
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            clf, est_res = time_estimator(kind, X, y, bs, args.epochs)
            flops = forward_flops_per_utterance(clf.module_, kind)
            raw_res = time_raw_loop(clf.module_, kind, X, y, bs, args.epochs)
            row = dict(model=kind, utterance_shape=shape, batch_size=bs,
                       n_utterances=args.n_utterances, epochs=args.epochs,
                       forward_flops_per_utt=flops, estimator=est_res, raw_loop=raw_res,
                       load_average=load_average())
            rows.append(row)
            print(f"{kind:5s} {bs:5d} {flops['total'] / 1e6:13.1f} {est_res['utt_per_s']:15.1f} "
                  f"{raw_res['utt_per_s']:14.1f} "
                  f"{est_res['utt_per_s'] / raw_res['utt_per_s']:7.2f}", flush=True)

    peak_after = matmul_peak_gflops()
    peak = max(peak_before, peak_after)
    print(f"\nfp32 matmul peak after: {peak_after:.1f} GFLOP/s; utilisation uses the best, "
          f"{peak:.1f} GFLOP/s")
    print(f"\n{'model':5s} {'batch':>5s} {'train GFLOP/s est':>17s} {'util est':>8s} "
          f"{'train GFLOP/s raw':>17s} {'util raw':>8s}")
    for row in rows:
        f = 3 * row["forward_flops_per_utt"]["total"]
        for key in ("estimator", "raw_loop"):
            row[key]["train_gflops_per_s"] = f * row[key]["utt_per_s"] / 1e9
            row[key]["utilisation"] = row[key]["train_gflops_per_s"] / peak
        print(f"{row['model']:5s} {row['batch_size']:5d} "
              f"{row['estimator']['train_gflops_per_s']:17.2f} "
              f"{100 * row['estimator']['utilisation']:7.1f}% "
              f"{row['raw_loop']['train_gflops_per_s']:17.2f} "
              f"{100 * row['raw_loop']['utilisation']:7.1f}%")

    payload = dict(benchmark="training", machine=desc, peak_gflops_before=peak_before,
                   peak_gflops_after=peak_after, peak_gflops=peak, results=rows,
                   torch_threads=torch.get_num_threads())
    if args.profile:
        bs = max(int(b) for b in args.batch_sizes.split(","))
        table, parts = profile_da(bs)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}_profile_da.txt").write_text(table + "\n")
        print(f"\nDA-CNN training step, batch {bs}: torch.profiler (self CPU time)\n{table}")
        print("DA-CNN parts, forward + backward on their own:")
        for name, p in parts.items():
            print(f"  {name:16s} {1e3 * p['seconds_per_batch']:8.1f} ms/batch  "
                  f"{p['train_gflops_per_s']:7.2f} GFLOP/s  ({100 * p['train_gflops_per_s'] / peak:.1f}% "
                  f"of peak; {100 * p['share_of_forward_flops']:.1f}% of the FLOPs)")
        payload["profile_da"] = dict(batch_size=bs, parts=parts)
    path = save_results(args.out, payload)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
