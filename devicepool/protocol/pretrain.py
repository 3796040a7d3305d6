"""Pretraining a universal device embedding on a simulated device population.

:func:`pretrain` runs the recipe of a :class:`PretrainRecipe` in a working folder:

1. **sources** -- clean speech (:func:`~devicepool.datasets.speech_sources`): synthetic
   speakers and real speakers of a folder, both modes, vocalised copies;
2. **population** -- ``n_devices`` training devices and ``n_calibration_devices``
   disjoint ones (:func:`~devicepool.datasets.random_devices` over microphones that
   exclude the default corpus's); every device records ``recordings_per_device``
   randomly chosen clean utterances; the log filter-bank features are cached in shards
   (``features/shard-*.npz``), so the simulation runs once and a restart skips the
   shards already written;
3. **training** -- a :class:`~devicepool.models.embedding_net.DeviceEmbeddingNet` with an
   additive angular margin head over the training devices, on random crops, AdamW with
   a warm-up then cosine learning rate and a margin warm-up; a checkpoint every
   ``checkpoint_every`` steps (written atomically; a rerun resumes from it; Ctrl-C
   writes one before it stops), the loss in ``train_log.jsonl``;
4. **back end** -- the chain (cosine or PLDA scorer x logistic or isotonic calibration)
   that validates best on half of the calibration devices (Cllr on the other half),
   refitted on all of them: scorer background = a sample of training devices,
   calibration pairs = the calibration devices (references by other speakers);
5. the **bundle** ``device_embedding.pt`` (weights only; :mod:`devicepool.pretrained`).

The protocol owns the I/O, seeding, threads and logging here; the network is a plain
module and the population a pure function of its seed.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_npz
from .pretrain_backend import atomic_torch_save, embed_recordings, fit_backend, offsets, write_bundle

__all__ = ["PretrainRecipe", "pretrain", "population_features", "embed_recordings"]


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines a pretrained device embedding (see the module)."""

    seed: int = 0
    # population
    n_devices: int = 3000
    recordings_per_device: int = 12
    n_calibration_devices: int = 300
    calibration_recordings: int = 8
    # speech sources
    n_synthetic: int = 400
    utterances_per_speaker: int = 4
    real_speakers: tuple = ("jackson", "nicolas", "theo")
    n_real: int = 300
    whisper_fraction: float = 0.4
    vocalise_fraction: float = 0.1
    duration: float = 2.0
    sample_rate: int = 16000
    real_share: float | None = 0.5  # share of recordings drawn from real speech (None: as pooled)
    source_eq_db: float = 4.0  # per-recording random colouration of the source (its own channel)
    # features and network
    n_mels: int = 64
    backbone: str = "ecapa"
    channels: int = 96
    embedding_dim: int = 128
    # training
    crop_frames: int = 140
    batch_size: int = 128
    max_steps: int = 12000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    margin: float = 0.2
    margin_warmup_fraction: float = 0.2
    scale: float = 30.0
    checkpoint_every: int = 250
    background_devices: int = 300
    calibration_speech: str = "real"  # calibrate on "real" (and vocalised real) speech only, or "all"
    microphones: tuple = field(default=(), compare=True)  # stems, filled by pretrain()

    #: Fields that only the back end reads: a checkpoint stays valid when they change.
    BACKEND_FIELDS = ("background_devices", "calibration_speech", "checkpoint_every",
                      "n_calibration_devices", "calibration_recordings")
    #: Fields that determine the simulated features (what a feature cache must match).
    POPULATION_FIELDS = ("seed", "n_devices", "recordings_per_device", "n_calibration_devices",
                         "calibration_recordings", "n_synthetic", "utterances_per_speaker",
                         "real_speakers", "n_real", "whisper_fraction", "vocalise_fraction", "duration",
                         "sample_rate", "real_share", "source_eq_db", "n_mels", "microphones")

    def population_dict(self):
        """The fields that determine the simulated features."""
        d = self.to_dict()
        return {k: d[k] for k in self.POPULATION_FIELDS}

    def training_dict(self):
        """The fields that determine the trained network (what a checkpoint must match)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.BACKEND_FIELDS}

    def to_dict(self):
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _filterbank(recipe):
    from ..features import FilterBank

    return FilterBank(sample_rate=recipe.sample_rate, n_mels=recipe.n_mels)


def source_colouration(x, sample_rate, rng, depth_db):
    """``x`` through a random smooth EQ (octave points 125 Hz-8 kHz, N(0, depth_db) dB,
    interpolated): the unknown channel a real source was itself recorded through."""
    from scipy import fft

    n = len(x)
    m = fft.next_fast_len(n, real=True)
    freqs = np.arange(m // 2 + 1) * sample_rate / m
    centres = 125.0 * 2.0 ** np.arange(7)
    gains = rng.normal(0.0, depth_db, len(centres))
    g = np.interp(np.log2(np.maximum(freqs, 1.0)), np.log2(centres), gains)
    return fft.irfft(fft.rfft(x, m) * 10 ** (g / 20.0), m)[:n]


def _record_shard(recipe, devices, first, sources, start, stop, tag):
    """Features of devices ``[start, stop)`` of ``devices``: frames, offsets, labels, meta."""
    from ..datasets import apply_device

    fb = _filterbank(recipe)
    n_rec = recipe.recordings_per_device if tag == "train" else recipe.calibration_recordings
    waves, labels, spk, mode = [], [], [], []
    real = np.flatnonzero(sources.kind != "synthetic")
    synthetic = np.flatnonzero(sources.kind == "synthetic")
    for d in range(start, stop):
        for r in range(n_rec):
            rng = np.random.default_rng([recipe.seed, 201 if tag == "train" else 202, first + d, r])
            if recipe.real_share is None or not len(real) or not len(synthetic):
                j = int(rng.integers(len(sources.data)))
            else:
                pool = real if rng.random() < recipe.real_share else synthetic
                j = int(pool[rng.integers(len(pool))])
            x = sources.data[j]
            if recipe.source_eq_db > 0:
                x = source_colouration(x, recipe.sample_rate, rng, recipe.source_eq_db)
            waves.append(apply_device(x, devices[d], recipe.sample_rate, rng).astype(np.float32))
            labels.append(d)
            spk.append(str(sources.speaker[j]))
            mode.append(str(sources.mode[j]))
    feats = fb.fit_transform(waves)
    lengths = np.array([len(f) for f in feats])
    return dict(frames=np.concatenate(list(feats)).astype(np.float16), lengths=lengths,
                labels=np.array(labels), speakers=np.array(spk), modes=np.array(mode))


def population_features(recipe, workdir, *, microphones, source=None, n_jobs=1, log=print):
    """Simulate (or reload) the training and calibration recordings' features.

    Parameters
    ----------
    recipe : PretrainRecipe
    workdir : str or os.PathLike
    microphones : sequence of str
        Impulse-response WAV paths (the default corpus's microphones left out).
    source : str or os.PathLike, optional
        Folder of real speech (FSDD naming) for ``recipe.real_speakers``.
    n_jobs : int, default=1
    log : callable

    Returns
    -------
    train, calibration : dict
        ``frames`` (n_frames, n_mels) float16, ``lengths``, ``labels`` (device index),
        ``speakers``, ``modes``.
    """
    from joblib import Parallel, delayed

    from ..datasets.population import random_devices, speech_sources

    work = Path(workdir)
    (work / "features").mkdir(parents=True, exist_ok=True)
    _check_population(recipe, work / "features")
    sources = None
    out = {}
    for tag, n, first in (("train", recipe.n_devices, 0),
                          ("calibration", recipe.n_calibration_devices, recipe.n_devices)):
        bounds = [(s, min(s + 100, n)) for s in range(0, n, 100)]
        todo = [b for b in bounds if not (work / "features" / f"{tag}-{b[0]:05d}.npz").exists()]
        if todo:
            devices = random_devices(n, recipe.seed, microphones=list(microphones), start=first)
        if todo and sources is None:
            t0 = time.time()
            sources = speech_sources(
                recipe.n_synthetic, recipe.utterances_per_speaker, source=source,
                source_speakers=list(recipe.real_speakers) if source is not None else None,
                n_real=recipe.n_real, whisper_fraction=recipe.whisper_fraction,
                vocalise_fraction=recipe.vocalise_fraction, duration=recipe.duration,
                sample_rate=recipe.sample_rate, random_state=recipe.seed)
            log(f"sources: {len(sources.data)} clean utterances in {time.time() - t0:.0f} s")
        for i in range(0, len(todo), max(n_jobs, 1) * 2):
            batch = todo[i:i + max(n_jobs, 1) * 2]
            t0 = time.time()
            shards = Parallel(n_jobs=n_jobs)(
                delayed(_record_shard)(recipe, devices, first, sources, s, e, tag) for s, e in batch)
            for (s, _e), shard in zip(batch, shards):
                atomic_write_npz(work / "features" / f"{tag}-{s:05d}.npz", **shard)
            log(f"{tag}: devices up to {batch[-1][1]} of {n} simulated ({time.time() - t0:.0f} s)")
        parts = [dict(np.load(work / "features" / f"{tag}-{s:05d}.npz")) for s, _ in bounds]
        out[tag] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return out["train"], out["calibration"]


def _check_population(recipe, folder):
    """Refuse a feature cache simulated for another population (before any simulation)."""
    path = folder / "population.json"
    want = json.loads(json.dumps(recipe.population_dict()))
    if path.exists():
        have = json.loads(path.read_text())
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise ValueError(f"the features in {str(folder)!r} were simulated for another population "
                             f"(differing: {', '.join(diff)}); use another working folder")
    else:
        path.write_text(json.dumps(want, indent=1, sort_keys=True))


def _batch(data, rows, crop, rng):
    """A (B, crop, F) float32 batch of random crops of the recordings ``rows``."""
    frames, lengths, offs = data["frames"], data["lengths"], data["offsets"]
    out = np.zeros((len(rows), crop, frames.shape[1]), dtype=np.float32)
    lens = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        n = int(lengths[r])
        k = min(n, crop)
        s = int(rng.integers(0, n - k + 1)) + int(offs[r])
        out[i, :k] = frames[s:s + k]
        lens[i] = k
    return out, lens


def _lr_at(step, recipe):
    warm = max(int(recipe.warmup_fraction * recipe.max_steps), 1)
    if step < warm:
        return float(recipe.lr * (step + 1) / warm)
    t = (step - warm) / max(recipe.max_steps - warm, 1)
    return float(recipe.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t))))


def _margin_at(step, recipe):
    ramp = max(int(recipe.margin_warmup_fraction * recipe.max_steps), 1)
    return recipe.margin * min(1.0, step / ramp)


def _new_state(recipe, train, n_classes):
    import torch

    from ..models.embedding_net import AAMSoftmax, DeviceEmbeddingNet

    torch.manual_seed(recipe.seed)
    net = DeviceEmbeddingNet(recipe.n_mels, backbone=recipe.backbone, channels=recipe.channels,
                             embedding_dim=recipe.embedding_dim)
    # input statistics from a sample of gain-removed frames
    rng = np.random.default_rng([recipe.seed, 301])
    rows = rng.choice(len(train["lengths"]), size=min(2000, len(train["lengths"])), replace=False)
    x, lens = _batch(train, rows, 400, rng)
    xg = DeviceEmbeddingNet.remove_gain(torch.from_numpy(x), torch.from_numpy(lens))
    valid = torch.arange(x.shape[1])[None, :] < torch.from_numpy(lens)[:, None]
    net.fit_input_statistics(xg[valid])
    head = AAMSoftmax(recipe.embedding_dim, n_classes, recipe.margin, recipe.scale)
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=recipe.lr,
                            weight_decay=recipe.weight_decay)
    return net, head, opt


def _training_fields(recipe_dict):
    return {k: v for k, v in recipe_dict.items() if k not in PretrainRecipe.BACKEND_FIELDS}


def _train(recipe, train, work, log, progress):
    import torch
    from tqdm.auto import tqdm

    from .._progress import show_bars

    ckpt_path = work / "checkpoint.pt"
    train = dict(train, offsets=offsets(train["lengths"]))
    n_classes = int(train["labels"].max()) + 1
    net, head, opt = _new_state(recipe, train, n_classes)
    step = 0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        if _training_fields(json.loads(ck["recipe"])) != json.loads(json.dumps(recipe.training_dict())):
            raise ValueError(f"{ckpt_path} was written by another recipe; use another folder")
        net.load_state_dict(ck["net"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["opt"])
        step = int(ck["step"])
        log(f"resumed at step {step}")
    by_device = [np.flatnonzero(train["labels"] == d) for d in range(n_classes)]

    def save():
        atomic_torch_save({"net": net.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
                            "step": step, "recipe": json.dumps(recipe.training_dict(), sort_keys=True)},
                           ckpt_path)

    stop = []  # a signal asks to stop; honoured between steps, so a checkpoint is consistent
    handlers = _stop_between_steps(stop)
    log_file = open(work / "train_log.jsonl", "a")
    bar = tqdm(total=recipe.max_steps, initial=step, desc="pretrain", unit="step",
               disable=not show_bars(progress), leave=True)
    t0, losses = time.time(), []
    try:
        net.train()
        while step < recipe.max_steps:
            if stop:
                raise KeyboardInterrupt
            # the batch of step s is a function of (seed, s): a resumed run sees the same data
            rng = np.random.default_rng([recipe.seed, 401, step])
            devs = rng.integers(0, n_classes, recipe.batch_size)
            rows = np.array([by_device[d][rng.integers(len(by_device[d]))] for d in devs])
            x, lens = _batch(train, rows, recipe.crop_frames, rng)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, recipe)
            emb = net(torch.from_numpy(x), torch.from_numpy(lens))
            y = torch.from_numpy(devs)
            loss = head(emb, y, margin=_margin_at(step, recipe))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == recipe.max_steps:
                with torch.no_grad():
                    acc = float((head.logits(emb).argmax(1) == y).float().mean())
                rec = {"step": step, "loss": float(np.mean(losses)), "train_accuracy": acc,
                       "lr": _lr_at(step - 1, recipe), "margin": _margin_at(step - 1, recipe),
                       "elapsed_s": round(time.time() - t0, 1)}
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                losses = []
            if step % recipe.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        log(f"interrupted: checkpoint at step {step} in {ckpt_path}; rerun to resume")
        raise
    finally:
        _restore(handlers)
        bar.close()
        log_file.close()
    save()
    return net.eval()


def _stop_between_steps(stop):
    """SIGINT/SIGTERM set ``stop`` instead of raising mid-step (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    return old


def _restore(handlers):
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def pretrain(recipe: PretrainRecipe, workdir, *, microphone_folder, source=None, n_jobs=1,
             threads=None, progress=True, log=print):
    """Run the pretraining recipe in ``workdir`` (resumable) and write the bundle.

    Parameters
    ----------
    recipe : PretrainRecipe
    workdir : str or os.PathLike
        Features, checkpoint, log and the bundle ``device_embedding.pt`` go here.
    microphone_folder : str or os.PathLike
        Measured microphone responses (``shared/data/micirp``); the 12 of the default
        corpus are left out.
    source : str or os.PathLike, optional
        Real-speech folder (FSDD naming) for ``recipe.real_speakers``.
    n_jobs : int, default=1
        Processes for the simulation.
    threads : int, optional
        Torch threads for training.
    progress : bool, default=True
    log : callable, default=print

    Returns
    -------
    path : pathlib.Path
        The bundle.
    """
    import torch

    from ..datasets.population import microphone_files

    _check_recipe(recipe, source)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    mics = microphone_files(microphone_folder)
    recipe = _with_microphones(recipe, mics)
    (work / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1, sort_keys=True))
    if threads:
        torch.set_num_threads(int(threads))
    train, cal = population_features(recipe, work, microphones=mics, source=source, n_jobs=n_jobs, log=log)
    log(f"population: {len(train['lengths'])} training recordings of {recipe.n_devices} devices, "
        f"{len(cal['lengths'])} calibration recordings of {recipe.n_calibration_devices} devices")
    net = _train(recipe, train, work, log, progress)
    backend = fit_backend(recipe, net, train, cal, log=log)
    return write_bundle(work / "device_embedding.pt", recipe, net, backend)


def _check_recipe(recipe, source):
    """Refuse, before any simulation, a recipe that would fail after training."""
    if recipe.backbone not in ("ecapa", "da_cnn"):
        raise ValueError(f"PretrainRecipe.backbone must be 'ecapa' or 'da_cnn'; got {recipe.backbone!r}")
    if recipe.calibration_speech not in ("real", "all"):
        raise ValueError("PretrainRecipe.calibration_speech must be 'real' or 'all'; got "
                         f"{recipe.calibration_speech!r}")
    if recipe.calibration_speech == "real" and (source is None or not recipe.real_speakers):
        raise ValueError("PretrainRecipe.calibration_speech='real' needs real speech: pass source= (a "
                         "folder of real speech) and real_speakers, or calibration_speech='all'")
    if recipe.n_calibration_devices < 4:
        raise ValueError("PretrainRecipe.n_calibration_devices must be >= 4 (the back end is validated "
                         f"on half of them); got {recipe.n_calibration_devices}")
    if recipe.background_devices < 2 or recipe.n_devices < 2:
        raise ValueError("PretrainRecipe: n_devices and background_devices (the scorer's background, "
                         f"at most n_devices are used) must be >= 2; got {recipe.n_devices}, "
                         f"{recipe.background_devices}")
    if recipe.recordings_per_device < 2 or recipe.calibration_recordings < 2:
        raise ValueError("PretrainRecipe: recordings_per_device and calibration_recordings must be >= 2")


def _with_microphones(recipe, mics):
    from dataclasses import replace

    return replace(recipe, microphones=tuple(Path(m).stem for m in mics))
