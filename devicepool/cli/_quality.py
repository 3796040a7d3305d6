"""What ``devicepool train`` learns about its own model beside the model: the task check
(are the "devices" devices?), a speaker-disjoint validation accuracy, and the open-set
gate ``predict`` uses to answer "unknown" for devices the model never heard.

All three look at the recordings through the shipped pretrained device embedding
(:class:`devicepool.estimators.DeviceEmbedding`; trained on simulated devices, not on the
user's corpus), except the validation, which fits the model itself once more.
"""

from __future__ import annotations

import numpy as np

from ._common import UsageError

#: references per device kept for the open-set gate, and the log10 LR a recording must
#: exceed against its best device (``bench/results/open_set_predict.json``)
GATE_REFERENCES = 10
GATE_THRESHOLD = 0.0
#: share of the speakers the validation fit holds out (at least one)
VALIDATION_SHARE = 0.2


def embed_recordings(data, sample_rate):
    """Unit-length pretrained device embeddings ``(n, 128)`` of waveforms at ``sample_rate``
    or of audio files, each first brought to ``sample_rate`` (what the model hears: a
    corpus read with ``--sample-rate``, a file at another rate given to ``predict``), then
    to the embedding's own rate."""
    from devicepool.audio import as_waveform
    from devicepool.estimators import DeviceEmbedding

    emb = DeviceEmbedding(sample_rate=int(sample_rate)).fit()
    data = list(data)
    parts = [emb.transform([as_waveform(x, int(sample_rate), index=start + i)
                            for i, x in enumerate(data[start:start + 256])])
             for start in range(0, len(data), 256)]  # a few waveforms in memory at a time
    return np.concatenate(parts) if parts else np.zeros((0, emb.embedding_dim_), np.float32)


def _centroid_accuracy(E, labels):
    """Leave-one-out nearest-centroid accuracy (cosine) of ``labels`` on ``E``, and its
    chance level (the most frequent label's share); None where a label has one recording."""
    names, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(names) < 2 or counts.min() < 2:
        return None
    sums = np.zeros((len(names), E.shape[1]))
    np.add.at(sums, codes, E)
    sims = E @ sums.T  # n x classes: sum of similarities (without self for the own class)
    own = np.arange(len(E))
    sims[own, codes] -= np.einsum("ij,ij->i", E, E)
    n = counts[None, :] - (np.arange(len(names))[None, :] == codes[:, None])
    acc = float(np.mean(np.argmax(sims / n, axis=1) == codes))
    return acc, float(counts.max() / len(labels))


def check_task(E, devices, speakers, *, margin=0.2):
    """Raise :class:`UsageError` when the recordings group by "speaker" much more than by
    "device" in the device embedding: the --pattern fields are then most likely swapped
    (a speaker classifier would be trained). Returns ``(device_score, speaker_score)``:
    nearest-centroid accuracy above chance of each grouping, or None when it cannot be
    judged (one speaker, or a label with one recording)."""
    if speakers is None:
        return None
    by_device = _centroid_accuracy(E, np.asarray(devices).astype(str))
    by_speaker = _centroid_accuracy(E, np.asarray(speakers).astype(str))
    if by_device is None or by_speaker is None:
        return None
    dev, spk = by_device[0] - by_device[1], by_speaker[0] - by_speaker[1]
    if spk > dev + margin:
        raise UsageError(
            f"the recordings look grouped by speaker, not by device: the device embedding tells "
            f"the {{speaker}} values apart ({100 * by_speaker[0]:.0f} % against "
            f"{100 * by_speaker[1]:.0f} % chance) much better than the {{device}} values "
            f"({100 * by_device[0]:.0f} % against {100 * by_device[1]:.0f} %); the --pattern "
            "probably has {speaker} and {device} swapped. Pass --skip-task-check to train "
            "on these labels anyway")
    return dev, spk


def validation_split(devices, speakers, seed):
    """``(train, held)`` boolean masks holding out ``VALIDATION_SHARE`` of the speakers (at
    least one) with every device left in training, or None when no such split exists (the
    networks' own speaker hold-out, :func:`devicepool.estimators.held_out_speakers`)."""
    from devicepool.estimators import held_out_speakers

    held = held_out_speakers(np.asarray(devices).astype(str), np.asarray(speakers).astype(str),
                             VALIDATION_SHARE, seed)
    return None if held is None else (~held, held)


def validate(make_pipeline, fit, data, devices, speakers, seed):
    """Fit ``make_pipeline()`` without the held-out speakers and score them: a dict of
    ``accuracy``, ``chance`` (the most frequent device's share of the held-out
    recordings), ``per_device`` accuracy, ``n_utterances``, ``held_out_speakers``,
    ``protocol``; or ``{"skipped": why}``."""
    if speakers is None:
        return {"skipped": "the corpus does not name its speakers ({speaker} in --pattern), so no "
                           "speaker-disjoint hold-out exists"}
    split = validation_split(devices, speakers, seed)
    if split is None:
        return {"skipped": "no speaker-disjoint hold-out leaves every device in training "
                           f"({len(np.unique(speakers))} speaker(s))"}
    train, held = split
    pipe = make_pipeline()
    fit(pipe, data[train], devices[train], speakers[train])
    truth = np.asarray(devices[held]).astype(str)
    pred = np.asarray(pipe.predict(data[held])).astype(str)
    names, counts = np.unique(truth, return_counts=True)
    return {"accuracy": float(np.mean(pred == truth)), "chance": float(counts.max() / len(truth)),
            "per_device": {str(d): float(np.mean(pred[truth == d] == d)) for d in names},
            "n_utterances": int(held.sum()),
            "held_out_speakers": sorted(np.unique(np.asarray(speakers)[held]).astype(str).tolist()),
            "protocol": (f"one fit without {VALIDATION_SHARE:.0%} of the speakers (at least one), "
                         "same model and seed, scored on theirs; the saved model is then fitted "
                         "on every recording")}


def open_set_gate(E, devices, speakers):
    """The gate kept in the model file: each device's references (embeddings, float32), the
    devices and the threshold."""
    from devicepool.forensic import enrolment_references

    ref = enrolment_references(np.asarray(devices).astype(str), speakers, GATE_REFERENCES)
    return {"references": np.asarray(E[ref], dtype=np.float32),
            "devices": np.asarray(devices)[ref].astype(str).tolist(),
            "threshold": GATE_THRESHOLD, "embedding": "devicepool shipped pretrained"}


def gate_answers(gate, E):
    """For each embedding: whether the gate knows it (its best log10 LR against the gate's
    devices is above the threshold, :meth:`devicepool.forensic.EnrolledDevices.predict`),
    that LR (bounded as the calibration supports) and the device it is nearest to."""
    from devicepool.forensic import UNKNOWN, DeviceLR, EnrolledDevices

    refs = np.asarray(gate["references"], dtype=np.float64)
    model = EnrolledDevices(lr=DeviceLR.pretrained(embedder=None), threshold=float(gate["threshold"]))
    model.fit(refs, gate["devices"])
    E = np.asarray(E, dtype=np.float64)
    raw = model.decision_function(E, bounded=False)
    best = raw.argmax(axis=1)
    rows = np.arange(len(raw))
    return (model.predict(E) != UNKNOWN, model.decision_function(E)[rows, best],
            model.classes_[best])


def describe_validation(v):
    """One line on the validation dict of :func:`validate`."""
    if "skipped" in v:
        return f"validation: none ({v['skipped']})"
    return (f"validation: {100 * v['accuracy']:.1f} % of {v['n_utterances']} recordings by "
            f"{len(v['held_out_speakers'])} held-out speaker(s) (chance {100 * v['chance']:.1f} %)")
