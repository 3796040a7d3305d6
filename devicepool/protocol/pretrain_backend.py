"""The pretrained embedding's back end (scorer + calibration) and its bundle file.

:func:`fit_backend` chooses the scorer and calibrator of the shipped
:class:`~devicepool.forensic.DeviceLR` by validation: every chain is fitted on the
calibration devices of even index and judged (Cllr) on pairs of the odd ones; the best
is refitted on all calibration devices. The scorer's background is a sample of the
training devices; no calibration device was seen in training. By default
(``calibration_speech="real"``) the calibration pairs are recordings of real speech only:
measured on the FSDD corpus, calibrating on simulated devices recording mostly synthetic
speech made the LRs overconfident on real speech (same-device LR < 1 for 13-15 % of pairs,
against 6-9 % with real-speech calibration; ``docs/pretrained.md``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes

__all__ = ["CHAINS", "atomic_torch_save", "embed_recordings", "fit_backend", "offsets", "write_bundle"]

#: The candidate chains, (scoring, calibration).
CHAINS = (("cosine", "logistic"), ("cosine", "isotonic"), ("snorm", "logistic"), ("snorm", "isotonic"),
          ("plda", "logistic"), ("plda", "isotonic"))


def atomic_torch_save(obj, path):
    """``torch.save`` through the protocol's one atomic writer (``store``)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def offsets(lengths):
    """Start of each recording in a ragged feature set's concatenated frames."""
    return np.concatenate([[0], np.cumsum(lengths)[:-1]])


def embed_recordings(net, data, batch_size=64):
    """Embeddings (n, d) of every recording of ``data`` (whole recordings, length-sorted)."""
    import torch

    frames, lengths, offs = data["frames"], data["lengths"], offsets(data["lengths"])
    order = np.argsort(lengths)
    E = np.empty((len(lengths), net.embedding_dim), dtype=np.float32)
    net.eval()
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            T = int(lengths[rows].max())
            x = np.zeros((len(rows), T, frames.shape[1]), dtype=np.float32)
            for j, r in enumerate(rows):
                x[j, :lengths[r]] = frames[offs[r]:offs[r] + lengths[r]]
            E[rows] = net(torch.from_numpy(x), torch.from_numpy(lengths[rows].astype(np.int64))).numpy()
    return E


def _subset(data, rows):
    """The recordings ``rows`` of a ragged feature set (frames, lengths, labels, ...)."""
    offs = offsets(data["lengths"])
    frames = np.concatenate([data["frames"][offs[r]:offs[r] + data["lengths"][r]] for r in rows])
    out = {k: v[rows] for k, v in data.items() if k not in ("frames", "offsets")}
    out["frames"] = frames
    return out


def _unit(E):
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


def fit_backend(recipe, net, train, cal, *, log=print):
    """The validated and refitted ``DeviceLR`` (embedder None: it takes embeddings).

    Returns
    -------
    lr : DeviceLR
    validation : dict
        Per chain, the measures on the held-out half; ``"chosen"``.
    """
    from ..forensic import DeviceLR
    from .pretrained_eval import lr_measures

    t0 = time.time()
    bg_rows = np.flatnonzero(train["labels"] < recipe.background_devices)
    E_bg = _unit(embed_recordings(net, _subset(train, bg_rows)))
    d_bg = train["labels"][bg_rows]
    if recipe.calibration_speech == "real":
        # real speech (and its vocalised copies); the synthesiser's speakers are "synth<i>"
        rows = np.flatnonzero(~np.char.startswith(cal["speakers"].astype(str), "synth"))
        if len(rows) == 0:
            raise ValueError("calibration_speech='real' but the calibration population has no real "
                             "speech (pass a real-speech source, or calibration_speech='all')")
        cal = _subset(cal, rows)
    E = _unit(embed_recordings(net, cal))
    dev, spk = cal["labels"], cal["speakers"]
    log(f"back end: {len(E_bg)} background and {len(E)} calibration embeddings "
        f"({time.time() - t0:.0f} s)")
    half = dev % 2 == 0
    validation = {}
    for scoring, calibration in CHAINS:
        lr = DeviceLR(scoring=scoring, calibration=calibration, random_state=recipe.seed).fit(
            E[half], dev[half], spk[half], X_background=E_bg, devices_background=d_bg)
        llr, y = lr.pair_llrs(E[~half], dev[~half], spk[~half])
        raw, _ = lr.pair_llrs(E[~half], dev[~half], spk[~half], bounded=False)
        validation[f"{scoring}+{calibration}"] = lr_measures(llr, y, raw)
        log(f"  {scoring}+{calibration}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in validation[f"{scoring}+{calibration}"].items()))
    chosen = min(validation, key=lambda k: validation[k]["cllr"])
    scoring, calibration = chosen.split("+")
    lr = DeviceLR(scoring=scoring, calibration=calibration, random_state=recipe.seed).fit(
        E, dev, spk, X_background=E_bg, devices_background=d_bg)
    validation["chosen"] = chosen
    log(f"back end: {chosen} chosen (lowest held-out Cllr)")
    return lr, validation


def write_bundle(path, recipe, net, backend, *, extra_validation=None):
    """Write the weights-only bundle (format in :mod:`devicepool.estimators.embedding`).

    Returns
    -------
    path : pathlib.Path
    """
    import platform

    import torch

    from .. import __version__
    from ..estimators import DeviceEmbedding
    from ..persistence import dump

    lr, validation = backend
    if extra_validation:
        validation = {**validation, **extra_validation}
    emb = DeviceEmbedding()  # fitted: the network and the features it reads
    emb.network_, emb.embedding_dim_ = net, int(net.embedding_dim)
    emb.sample_rate_, emb.n_mels_ = int(recipe.sample_rate), int(recipe.n_mels)
    provenance = {
        "recipe": json.dumps(recipe.to_dict(), sort_keys=True),
        "provenance": json.dumps({"devicepool": __version__, "torch": torch.__version__,
                                  "python": platform.python_version(),
                                  "date": time.strftime("%Y-%m-%d", time.gmtime())}, sort_keys=True),
        "validation": json.dumps(validation, sort_keys=True),
        "lr": lr.to_payload(),
    }
    path = Path(path)
    dump(emb, path, provenance=provenance)
    return path
