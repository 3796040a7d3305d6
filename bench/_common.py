"""Shared helpers of the benchmarks: machine description, fp32 matmul peak, peak RSS, timing.

Run the benchmarks from the repository root (``python bench/bench_features.py``); this module
puts the repository root on ``sys.path`` so the checkout's ``devicepool`` is the one measured.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENV_KEYS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE", "KMP_AFFINITY", "OMP_PROC_BIND", "DNNL_MAX_CPU_ISA",
)


def _cpuinfo():
    model, flags = "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].split()
    return model, flags


def load_average():
    """1-, 5- and 15-minute load averages (a sign of CPU contention from other processes)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_description():
    """Dict describing the machine, the library versions and the thread settings."""
    import numpy as np
    import scipy
    import torch

    model, flags = _cpuinfo()
    simd = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    desc = {
        "cpu_model": model,
        "cpu_simd_flags": simd,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "load_average_at_start": load_average(),
    }
    for name in ("librosa", "python_speech_features", "sklearn", "skorch"):
        try:
            mod = __import__(name)
            desc[name] = getattr(mod, "__version__", "installed")
        except ImportError:
            desc[name] = None
    try:
        from threadpoolctl import threadpool_info

        desc["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    try:
        desc["git_commit"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        desc["git_commit"] = None
    from devicepool import __version__

    desc["devicepool"] = __version__
    return desc


def print_machine(desc):
    print(f"CPU: {desc['cpu_model']} ({desc['logical_cpus']} logical CPUs, "
          f"SIMD {' '.join(desc['cpu_simd_flags'])})")
    print(f"python {desc['python']}, numpy {desc['numpy']}, scipy {desc['scipy']}, "
          f"torch {desc['torch']} (threads {desc['torch_threads']}, interop "
          f"{desc['torch_interop_threads']}), librosa {desc.get('librosa')}")
    env = {k: v for k, v in desc["env"].items() if v is not None}
    print(f"thread/BLAS env: {env or 'none set'}; load average {desc['load_average_at_start']}")


def matmul_peak_gflops(n=2048, repeats=7, dtype="float32"):
    """Best-of-``repeats`` GFLOP/s of ``torch.matmul`` on two ``n x n`` matrices.

    ``2 n^3`` FLOPs per product; the best run is the practical fp32 peak that the
    training-utilisation figures are divided by.
    """
    import torch

    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dt)
    b = torch.randn(n, n, generator=g, dtype=dt)
    c = torch.empty(n, n, dtype=dt)
    torch.matmul(a, b, out=c)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def peak_rss_mib(who=resource.RUSAGE_SELF):
    """Peak resident set size in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def current_rss_mib():
    """Current resident set size in MiB (from /proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def best_of(fn, repeats=3):
    """Run ``fn`` ``repeats`` times; return (best seconds, all seconds, last result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def save_results(name, payload):
    """Write ``bench/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def speech_utterances(n, seconds=3.0, sample_rate=16000, seed=0, dtype="float64"):
    """``n`` waveforms of ``seconds`` each, built from real FSDD speech when it is present.

    FSDD digits (8 kHz, ~0.5 s) are resampled to ``sample_rate`` and concatenated until an
    utterance is ``seconds`` long; without the shared data, Gaussian noise is used.
    Returns (list of float64 arrays, source description).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    length = int(round(seconds * sample_rate))
    folder = SHARED / "fsdd" / "recordings"
    if not folder.is_dir():
        return ([(0.1 * rng.standard_normal(length)).astype(dtype) for _ in range(n)],
                "gaussian noise")
    from devicepool.audio import load_audio

    files = sorted(folder.glob("*.wav"))
    pick = rng.permutation(len(files))
    pool, out, buf, used = iter(pick.tolist() * 100), [], [], 0
    cache = {}
    while len(out) < n:
        k = next(pool)
        if k not in cache:
            cache[k] = load_audio(files[k], sample_rate).astype(np.float64)
        buf.append(cache[k])
        used += cache[k].shape[0]
        if used >= length:
            out.append(np.concatenate(buf)[:length].astype(dtype))
            buf, used = [], 0
    return out, f"FSDD speech resampled to {sample_rate} Hz, concatenated to {seconds} s"
