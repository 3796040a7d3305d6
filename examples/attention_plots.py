"""Fig. 2-style plots of a trained DA-CNN: where does the network listen?

The paper's Fig. 2 shows, for a DA-CNN trained on neutral speech and one trained on
whispered speech, (a) the mean band (frequency) attention weight of each of the 24 mel
bands and (b, c) how the time attention weights are spread over voiced, unvoiced and
silent frames. This script trains both models on the training speakers of a parallel
neutral + whisper corpus, computes the attention weights of the held-out speakers'
recordings, labels each frame with ``voicing_labels`` and writes

* ``fig2a-band-weights.png``
* ``fig2b-time-weights-neutral.png``
* ``fig2c-time-weights-whisper.png``

Run::

    python examples/attention_plots.py --out attention      # ~3-4 min on 2 cores
    python examples/attention_plots.py --fast --out /tmp/a   # seconds

``DEVICEPOOL_EXAMPLES_FAST=1`` in the environment is the same as ``--fast``.
Needs matplotlib (``pip install devicepool[plot]``).
"""

import argparse
import os
import time

import numpy as np

from devicepool import DACNNClassifier, FilterBank, make_device_corpus, voicing_labels
from devicepool.plotting import (
    align_frame_labels,
    plot_band_weights,
    plot_time_weight_distribution,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny corpus and 2 epochs")
    parser.add_argument("--out", default="attention", help="output folder (default ./attention)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("DEVICEPOOL_EXAMPLES_FAST") == "1"
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    if fast:
        sizes = dict(n_devices=3, n_speakers=3, n_utterances=2, duration=0.6)
        params = dict(max_epochs=2)
    else:
        sizes = dict(n_devices=4, n_speakers=6, n_utterances=4)
        params = {}  # the library's defaults
    corpus = make_device_corpus(modes=("neutral", "whisper"), random_state=0, **sizes)
    fbank = FilterBank(sample_rate=corpus.sample_rate)
    feats = fbank.transform(corpus.data)  # one (n_frames, 24) array per recording

    speakers = np.unique(corpus.groups)
    held_out = np.isin(corpus.groups, speakers[-max(1, len(speakers) // 3):])

    band, time_weights, frame_labels = {}, {}, {}
    for mode in ("neutral", "whisper"):
        train = (corpus.mode == mode) & ~held_out
        test = np.flatnonzero((corpus.mode == mode) & held_out)
        clf = DACNNClassifier(random_state=0, **params)
        clf.fit(feats[train], corpus.target[train], groups=corpus.groups[train])
        out = clf.predict_outputs(feats[test])  # one pass: logits, embeddings, attention
        acc = np.mean(clf.classes_[out.logits.argmax(1)] == corpus.target[test])
        print(f"{mode}-trained DA-CNN: accuracy {acc:.3f} on {len(test)} held-out {mode} recordings")

        att = out.attention  # AttentionWeights(time=[...], band=(n, 24), time_reduction=4)
        band[mode] = att.band
        time_weights[mode] = att.time
        # Voicing class of each FilterBank frame, mapped onto the network's output
        # frames (time reduced 4x by the two poolings) by majority.
        frame_labels[mode] = [
            align_frame_labels(voicing_labels(corpus.data[i], corpus.sample_rate), len(w),
                               factor=att.time_reduction)
            for i, w in zip(test, att.time)
        ]

    ax = plot_band_weights(band, labels={"neutral": "neutral-trained", "whisper": "whisper-trained"},
                           sample_rate=corpus.sample_rate, title="Fig. 2a: band attention")
    ax.figure.savefig(os.path.join(args.out, "fig2a-band-weights.png"), dpi=120)
    for panel, mode in (("b", "neutral"), ("c", "whisper")):
        ax = plot_time_weight_distribution(time_weights[mode], frame_labels[mode],
                                           title=f"Fig. 2{panel}: time attention, {mode}-trained")
        ax.figure.savefig(os.path.join(args.out, f"fig2{panel}-time-weights-{mode}.png"), dpi=120)

    for mode in band:
        top = np.argsort(band[mode].mean(axis=0))[::-1][:3]
        print(f"{mode}: most attended mel bands {top.tolist()}")
    print(f"figures written to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
