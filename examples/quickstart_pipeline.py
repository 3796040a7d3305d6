"""Quickstart: features + DA-CNN in a scikit-learn Pipeline, trained and tested on new speakers.

The embedded corpus (``make_device_corpus``) records every utterance with every device, so
the only thing that tells two recordings of one utterance apart is the device. We train on
some speakers and test on the others (never split the recordings of one speaker between
training and test: the network would learn the speakers).

Run::

    python examples/quickstart_pipeline.py          # ~1-2 min on 2 CPU cores
    python examples/quickstart_pipeline.py --fast   # seconds (tiny corpus, 2 epochs)

``DEVICEPOOL_EXAMPLES_FAST=1`` in the environment is the same as ``--fast``.
"""

import argparse
import os
import time

import numpy as np
from sklearn.metrics import classification_report
from sklearn.pipeline import Pipeline

from devicepool import DACNNClassifier, FilterBank, make_device_corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny corpus and 2 epochs")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("DEVICEPOOL_EXAMPLES_FAST") == "1"

    t0 = time.perf_counter()
    if fast:
        sizes = dict(n_devices=3, n_speakers=3, n_utterances=2, duration=0.6)
        params = dict(max_epochs=2)
    else:
        sizes = dict(n_devices=4, n_speakers=6, n_utterances=4)
        params = {}  # the library's defaults
    # 1. A corpus: waveforms (data), device names (target), speaker ids (groups).
    corpus = make_device_corpus(modes=("neutral",), random_state=0, **sizes)
    print(f"{len(corpus.data)} recordings, devices: {corpus.devices}")

    # 2. Hold out the last speaker(s): 2/3 of the speakers train, 1/3 test.
    speakers = np.unique(corpus.groups)
    test_speakers = speakers[-max(1, len(speakers) // 3):]
    test = np.isin(corpus.groups, test_speakers)
    X_train, y_train = corpus.data[~test], corpus.target[~test]
    X_test, y_test = corpus.data[test], corpus.target[test]
    print(f"train: {len(X_train)} recordings, test: {len(X_test)} "
          f"(held-out speakers {test_speakers.tolist()})")

    # 3. The pipeline: 24 log-mel bands per 10 ms frame -> dual attention pooling CNN.
    pipe = Pipeline([
        ("fbank", FilterBank(sample_rate=corpus.sample_rate)),
        ("clf", DACNNClassifier(random_state=0, **params)),
    ])
    # The speakers let the classifier validate on a speaker it does not train on.
    pipe.fit(X_train, y_train, clf__groups=corpus.groups[~test])
    clf = pipe.named_steps["clf"]
    plan = clf.train_plan_
    print(f"trained {plan['epochs']} epochs ({plan['steps']} steps), validated on "
          f"{plan['valid_speakers']}")

    # 4. Evaluate on the held-out speakers.
    y_pred = pipe.predict(X_test)
    print(f"accuracy on held-out speakers: {np.mean(y_pred == y_test):.3f}")
    print(classification_report(y_test, y_pred, zero_division=0))

    # 5. Probabilities: one column per device, in clf.classes_ order.
    proba = pipe.predict_proba(X_test[:3])
    for p, truth in zip(proba, y_test[:3]):
        best = int(np.argmax(p))
        print(f"true {truth:<22s} predicted {clf.classes_[best]:<22s} p={p[best]:.2f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
