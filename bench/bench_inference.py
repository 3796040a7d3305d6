"""Benchmark 3: inference latency (one 3 s file -> label) and batch throughput (features).

A ``Pipeline(FilterBank(), DACNNClassifier())`` is fitted briefly on 3 s speech utterances
(the weights do not change the cost), then:

* latency, warm: ``pipe.predict([path])`` on one 3 s 16-bit WAV file, many times; the
  same run times its stages alone (read the file, FilterBank, classifier) and the bare
  module forward (``torch.no_grad``) as the floor the wrapper is compared with;
* throughput: ``clf.predict(features)`` on 3 s feature arrays, against the bare module
  forward on the same batches, as utterances per second and as FLOP utilisation of the
  fp32 matmul peak measured in the same run.

Usage (from the repository root)::

    python bench/bench_inference.py            # ~1-2 minutes
    python bench/bench_inference.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    load_average,
    machine_description,
    matmul_peak_gflops,
    print_machine,
    save_results,
    speech_utterances,
)


def timings(fn, repeats):
    fn()  # warm
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(ts):
    ts = np.asarray(ts) * 1e3
    return dict(median_ms=float(np.median(ts)), p90_ms=float(np.percentile(ts, 90)),
                min_ms=float(ts.min()), n=len(ts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--n-batch", type=int, default=256, help="utterances for throughput")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the run (default: torch's, 1 per core)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="inference")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.n_batch = 10, 64

    import soundfile as sf
    import torch
    from sklearn.pipeline import Pipeline

    from devicepool import FilterBank, load_audio
    from devicepool.estimators import DACNNClassifier
    from devicepool.models import forward_flops

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    desc = machine_description()
    print_machine(desc)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")

    X, source = speech_utterances(max(args.n_batch, 40), 3.0, dtype="float32")
    y = np.arange(len(X)) % 4
    pipe = Pipeline([("features", FilterBank()),
                     ("clf", DACNNClassifier(max_epochs=1, random_state=0))])
    pipe.fit(X[:40], y[:40])
    fb, clf = pipe.named_steps["features"], pipe.named_steps["clf"]
    module = clf.module_.eval()

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "utterance_3s.wav")
        sf.write(path, X[0], 16000, subtype="PCM_16")
        feats1 = fb.transform([path])
        x1 = torch.from_numpy(feats1[0][None])
        l1 = torch.tensor([x1.shape[1]])

        def bare_forward():
            with torch.no_grad():
                return module(x1, l1).argmax(1)

        stages = {
            "pipe.predict([path]) (file -> label)": lambda: pipe.predict([path]),
            "read + resample check (load_audio)": lambda: load_audio(path, 16000),
            "FilterBank.transform([path])": lambda: fb.transform([path]),
            "clf.predict(features)": lambda: clf.predict(feats1),
            "bare module forward (no_grad)": bare_forward,
        }
        lat = {}
        for _ in range(2):  # interleave, keep the better pass per stage
            for name, fn in stages.items():
                s = summary(timings(fn, args.repeats // 2))
                if name not in lat or s["median_ms"] < lat[name]["median_ms"]:
                    lat[name] = s
        assert pipe.predict([path])[0] == clf.classes_[int(bare_forward()[0])]

    print(f"\nlatency of one 3 s file, warm ({args.repeats // 2} calls per pass, better of 2 "
          "passes):")
    floor = lat["bare module forward (no_grad)"]["median_ms"]
    for name, s in lat.items():
        print(f"  {name:40s} median {s['median_ms']:7.2f} ms  p90 {s['p90_ms']:7.2f} ms  "
              f"({s['median_ms'] / floor:5.2f}x the bare forward)")

    feats = fb.transform(X[: args.n_batch])
    flops = forward_flops(module, 300)["total"]
    batch = torch.from_numpy(np.stack(feats))
    lengths = torch.full((len(feats),), batch.shape[1], dtype=torch.long)

    def bare_batches(bs):
        with torch.no_grad():
            for i in range(0, len(feats), bs):
                module(batch[i:i + bs], lengths[i:i + bs])

    thr = {}
    for name, fn in ((f"clf.predict(features) (batch_size {clf.batch_size})", lambda: clf.predict(feats)),
                     ("bare forward, batches of 16", lambda: bare_batches(16)),
                     ("bare forward, batches of 64", lambda: bare_batches(64))):
        best = min(timings(fn, 3))
        thr[name] = dict(seconds=best, utt_per_s=len(feats) / best,
                         gflops_per_s=flops * len(feats) / best / 1e9)
        thr[name]["utilisation"] = thr[name]["gflops_per_s"] / peak
    ref = thr["bare forward, batches of 16"]["utt_per_s"]
    print(f"\nthroughput from features ({len(feats)} utterances of 3 s, DA-CNN forward "
          f"{flops / 1e6:.0f} MFLOP/utterance):")
    for name, r in thr.items():
        print(f"  {name:40s} {r['utt_per_s']:8.1f} utt/s  {r['gflops_per_s']:6.2f} GFLOP/s "
              f"({100 * r['utilisation']:4.1f}% of peak; {r['utt_per_s'] / ref:4.2f}x bare/16)")
    print(f"load average: {load_average()}")
    path = save_results(args.out, dict(benchmark="inference", machine=desc, source=source,
                                       peak_gflops=peak, latency=lat, throughput=thr,
                                       forward_flops_per_utt=flops,
                                       load_average_end=load_average()))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
