"""Benchmark 1: FilterBank vs librosa and python_speech_features on >= 10 minutes of audio.

Every method runs on the same utterances in the same process, in interleaved rounds (A, B,
C, A, B, C, ...), so a burst of load from other processes hits all of them alike; the best
round of each is reported, as wall time and as CPU time of this process (CPU time is less
sensitive to other processes sharing the cores; it does not count joblib worker processes).
The table is run twice: with the libraries' default BLAS threads (2 here) and with BLAS
limited to one thread (threadpoolctl), since multi-threaded BLAS on small products is slow
when other processes use the cores.

Usage (from the repository root)::

    python bench/bench_features.py                # 200 utterances x 3 s = 10 min of audio
    python bench/bench_features.py --quick        # 40 x 3 s, 2 rounds (smoke run)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import (
    load_average,
    machine_description,
    print_machine,
    save_results,
    speech_utterances,
)

# the oracle configuration of tests/test_features.py: identical maths in FilterBank and librosa
ORACLE = dict(n_fft=400, window="hann", preemphasis=0.0, f_min=0.0)
LOG_FLOOR = 1e-10


def librosa_log_mel(y, librosa):
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=400, hop_length=160, win_length=400, window="hann",
        center=False, power=2.0, n_mels=24, fmin=0.0, fmax=8000.0, htk=True, norm=None,
    )
    return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-utterances", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="40 utterances, 2 rounds")
    parser.add_argument("--blas-threads", default="default,1",
                        help="comma-separated BLAS thread limits to run the table under")
    parser.add_argument("--out", default="features", help="name of the results JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_utterances, args.rounds = 40, 2

    import librosa
    import python_speech_features as psf
    from threadpoolctl import threadpool_limits

    from devicepool import FilterBank

    desc = machine_description()
    print_machine(desc)
    X, source = speech_utterances(args.n_utterances, args.seconds)
    audio_s = args.n_utterances * args.seconds
    print(f"audio: {args.n_utterances} utterances x {args.seconds} s = {audio_s / 60:.1f} min "
          f"({source})\n")
    X2d = np.stack(X)

    fb_oracle = FilterBank(**ORACLE)
    fb_oracle_2 = FilterBank(**ORACLE, n_jobs=2)
    fb_paper = FilterBank()  # hamming, n_fft 512, pre-emphasis 0.97, 20 Hz - 8 kHz
    methods = {
        "FilterBank (oracle config)": lambda: fb_oracle.transform(X),
        "librosa melspectrogram+log, per utterance": lambda: [librosa_log_mel(y, librosa) for y in X],
        "librosa melspectrogram+log, one 2-D call": lambda: librosa_log_mel(X2d, librosa),
        "FilterBank (oracle config), n_jobs=2": lambda: fb_oracle_2.transform(X),
        "FilterBank (paper config)": lambda: fb_paper.transform(X),
        "python_speech_features.logfbank (24 filters)": lambda: [
            psf.logfbank(y, samplerate=16000, winlen=0.025, winstep=0.01, nfilt=24, nfft=512,
                         lowfreq=20, highfreq=8000, preemph=0.97)
            for y in X
        ],
    }

    # correctness first: the two oracle implementations agree
    ours = fb_oracle.transform(X)
    ref = [librosa_log_mel(y, librosa) for y in X]
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))
    print(f"max |FilterBank - librosa| over all frames and bands (log domain): {max_diff:.2e}")
    # warm-up (joblib workers, FFT plans, librosa caches)
    for fn in methods.values():
        fn()

    tables = {}
    for setting in args.blas_threads.split(","):
        limit = None if setting == "default" else int(setting)
        print(f"\n== BLAS/OpenMP threads: {setting} (threadpoolctl limit {limit}) ==")
        with threadpool_limits(limit):
            tables[setting] = run_table(methods, args.rounds, audio_s)
    path = save_results(args.out, dict(
        benchmark="features", machine=desc, source=source, n_utterances=args.n_utterances,
        seconds=args.seconds, audio_seconds=audio_s, rounds=args.rounds,
        max_abs_diff_vs_librosa=max_diff, tables=tables,
    ))
    print(f"results: {path}")


def run_table(methods, rounds, audio_s):
    wall = {k: [] for k in methods}
    cpu = {k: [] for k in methods}
    loads = []
    for _ in range(rounds):
        for name, fn in methods.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        loads.append(load_average()[0])

    ref_name = "librosa melspectrogram+log, per utterance"
    best_wall = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    print(f"\n{'method':48s} {'wall s':>7s} {'audio s/s':>10s} {'x librosa':>10s} "
          f"{'cpu s':>7s} {'x librosa':>10s}")
    rows = []
    for name in methods:
        w, c = best_wall[name], best_cpu[name]
        r_w = best_wall[ref_name] / w
        r_c = best_cpu[ref_name] / c
        cpu_txt = f"{c:7.3f} {r_c:10.2f}" if "n_jobs" not in name else f"{'(workers)':>7s} {'':>10s}"
        print(f"{name:48s} {w:7.3f} {audio_s / w:10.0f} {r_w:10.2f} {cpu_txt}")
        rows.append(dict(method=name, best_wall_s=w, best_cpu_s=c, audio_s_per_s=audio_s / w,
                         ratio_vs_librosa_wall=r_w, ratio_vs_librosa_cpu=r_c,
                         wall_s_rounds=wall[name], cpu_s_rounds=cpu[name]))
    jobs_gain = best_wall["FilterBank (oracle config)"] / best_wall["FilterBank (oracle config), n_jobs=2"]
    print(f"\nn_jobs=2 speed-up over n_jobs=1 (wall): {jobs_gain:.2f}x")
    print(f"1-min load average after each round: {loads} (2 cores; > ~1 means other processes "
          "shared the CPU)")
    return dict(results=rows, n_jobs2_speedup_wall=jobs_gain, load_after_rounds=loads)


if __name__ == "__main__":
    main()
