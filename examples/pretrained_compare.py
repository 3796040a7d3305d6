"""Compare recordings of devices nobody trained on, with the shipped pretrained embedding.

No training: the embedding was pretrained on 3,000 simulated devices (docs/pretrained.md)
and ships with a likelihood-ratio calibration. We make a small corpus of the default
devices (never heard in pretraining), then

1. state the evidence (log10 LR) that questioned recordings come from the device of three
   reference recordings by other speakers;
2. enrol each device with 3 recordings and identify new recordings, or answer
   "unknown device" for a device nobody enrolled.

Run::

    python examples/pretrained_compare.py          # ~30 s
    python examples/pretrained_compare.py --fast   # seconds

``DEVICEPOOL_EXAMPLES_FAST=1`` in the environment is the same as ``--fast``.
"""

import argparse
import os

import numpy as np

from devicepool import make_device_corpus
from devicepool.forensic import UNKNOWN, DeviceLR, EnrolledDevices, verbal_equivalent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a tiny corpus")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("DEVICEPOOL_EXAMPLES_FAST") == "1"
    n_devices = 4 if fast else 8
    corpus = make_device_corpus(n_devices=n_devices, n_speakers=4, n_utterances=2 if fast else 4,
                                modes=("neutral",), random_state=1)
    dev, spk = np.asarray(corpus.target), np.asarray(corpus.groups)

    # 1. the evidence: questioned recordings of speaker 4 against 3 references of one device
    lr = DeviceLR.pretrained()
    device = corpus.devices[0]
    references = corpus.data[(dev == device) & (spk != "spk04")][:3]
    print(f"references: 3 recordings of {device!r} by other speakers")
    for d in corpus.devices[:3]:
        q = corpus.data[(dev == d) & (spk == "spk04")][:1]
        llr = float(lr.predict_llr(q, references)[0])
        print(f"  questioned recording of {d!r}: log10 LR {llr:+.2f} ({verbal_equivalent(round(llr, 2))})")
    low, high = lr.llr_bounds_
    print(f"(LRs bounded to log10 LR in [{low:+.2f}, {high:+.2f}] by the calibration data)")

    # 2. open set by enrolment: the last device is never enrolled
    known = np.isin(dev, corpus.devices[:-1])
    enrol = known & (spk == "spk01")
    model = EnrolledDevices().fit(corpus.data[enrol], dev[enrol])
    test = spk == "spk03"
    answers = model.predict(corpus.data[test])
    truth = np.where(np.isin(dev[test], corpus.devices[:-1]), dev[test], UNKNOWN)
    print(f"enrolled {len(model.classes_)} devices with {int(model.n_enrolled_.min())} recordings each; "
          f"{corpus.devices[-1]!r} not enrolled")
    print(f"open-set accuracy on a new speaker: {np.mean(answers == truth):.2f} "
          f"({int(np.sum(answers == UNKNOWN))} answered {UNKNOWN!r})")


if __name__ == "__main__":
    main()
