"""Train on a folder of recordings, save the model two ways, load it and predict files.

This is the workflow for your own data. Here the folder is made first: a few recordings
of the embedded corpus are written as WAV files in the layout::

    <root>/<device>/<speaker>_<utterance>.wav

(replace ``<root>`` by your own folder and skip step 1). Then:

2. ``load_audio_folder`` reads the layout: ``data`` are file paths, ``target`` devices,
   ``groups`` speakers;
3. a ``FilterBank`` + ``DACNNClassifier`` pipeline is fitted on the paths (the files are
   read, resampled and framed by ``FilterBank``);
4. the model is saved with joblib (the whole pipeline; loading runs pickled code, so only
   load files you trust) and with the classifier's safe weights-only format
   (``clf.save``; loading it never runs code);
5. both are loaded back and predict new files; their predictions agree.

Run::

    python examples/train_save_predict_files.py --out my-model      # ~1-2 min on 2 cores
    python examples/train_save_predict_files.py --fast --out /tmp/m  # seconds

``DEVICEPOOL_EXAMPLES_FAST=1`` in the environment is the same as ``--fast``.
"""

import argparse
import os
import shutil
import tempfile
import time

import joblib
import numpy as np
import soundfile as sf
from sklearn.pipeline import Pipeline

from devicepool import DACNNClassifier, FilterBank, load_audio_folder, make_device_corpus


def write_corpus_folder(root, corpus):
    """Write each recording of ``corpus`` to ``root/<device>/<speaker>_<utterance>.wav``."""
    for wave, device, speaker, utt in zip(corpus.data, corpus.target, corpus.groups,
                                          corpus.utterance):
        folder = os.path.join(root, device)
        os.makedirs(folder, exist_ok=True)
        take = utt.split("_")[1]  # "spk01_u03_neutral" -> "u03"
        sf.write(os.path.join(folder, f"{speaker}_{take}.wav"), wave, corpus.sample_rate,
                 subtype="PCM_16")


def train_save_predict(root, out, params):
    """Steps 2-5 on the folder ``root``; models are written to ``out``."""

    # 2. Load the folder: the pattern names the fields of each relative path.
    bunch = load_audio_folder(root, pattern="{device}/{speaker}_{utterance}.wav")
    print(bunch.DESCR)

    # Keep the last speaker's files aside as "new recordings" to predict.
    new = bunch.groups == np.unique(bunch.groups)[-1]

    # 3. Fit on file paths.
    pipe = Pipeline([
        ("fbank", FilterBank(sample_rate=bunch.sample_rate)),
        ("clf", DACNNClassifier(random_state=0, **params)),
    ])
    pipe.fit(bunch.data[~new], bunch.target[~new], clf__groups=bunch.groups[~new])

    # 4a. joblib: the whole pipeline in one file (pickle: load only files you trust).
    pipe_path = os.path.join(out, "pipeline.joblib")
    joblib.dump(pipe, pipe_path)
    # 4b. safe format: classifier weights, parameters and classes_ only (torch weights_only).
    safe_path = os.path.join(out, "da_cnn.pt")
    pipe.named_steps["clf"].save(safe_path)
    print(f"saved {pipe_path} ({os.path.getsize(pipe_path) // 1024} KiB) and "
          f"{safe_path} ({os.path.getsize(safe_path) // 1024} KiB)")

    # 5. Load and predict files.
    files = bunch.data[new]
    loaded_pipe = joblib.load(pipe_path)
    pred_joblib = loaded_pipe.predict(files)

    # The safe file holds the classifier only: rebuild the feature step around it
    # with the same parameters as in training.
    clf = DACNNClassifier.load(safe_path, device="cpu")
    fbank = FilterBank(sample_rate=bunch.sample_rate)
    proba = clf.predict_proba(fbank.transform(files))
    pred_safe = clf.classes_[proba.argmax(axis=1)]

    assert np.array_equal(pred_joblib, pred_safe), "the two saved models disagree"
    for f, p, row, truth in zip(files, pred_safe, proba, bunch.target[new]):
        print(f"{os.path.relpath(f, root):<40s} -> {p:<22s} p={row.max():.2f}  (true {truth})")
    print(f"accuracy on the new speaker's files: {np.mean(pred_safe == bunch.target[new]):.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny corpus and 2 epochs")
    parser.add_argument("--out", default="my-model", help="where the models go (default ./my-model)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("DEVICEPOOL_EXAMPLES_FAST") == "1"
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    # 1. A folder of recordings (use your own instead).
    if fast:
        sizes = dict(n_devices=3, n_speakers=3, n_utterances=2, duration=0.6)
        params = dict(max_epochs=2)
    else:
        sizes = dict(n_devices=4, n_speakers=6, n_utterances=4)
        params = {}  # the library's defaults
    corpus = make_device_corpus(modes=("neutral",), random_state=0, **sizes)
    root = tempfile.mkdtemp(prefix="devicepool-recordings-")
    try:
        write_corpus_folder(root, corpus)
        print(f"wrote {len(corpus.data)} WAV files under {root}")
        train_save_predict(root, args.out, params)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the example's own temporary folder
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
