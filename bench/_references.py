"""Classical reference systems for the accuracy benchmark (utterance sets of log filterbanks).

Each factory returns an unfitted scikit-learn classifier that reads an utterance set of
``FilterBank`` features ``(n_frames, 24)``, so :func:`devicepool.protocol.register_model`
runs it on exactly the protocol's folds, beside the networks:

* ``logreg_meanstd``: per-band mean and standard deviation over time (48 values), scaled,
  multinomial logistic regression -- the simplest channel model;
* ``svm_percentiles`` (after Hanilci et al.): per-band mean, standard deviation, 10th and
  90th percentiles (96 values), scaled, RBF-SVM;

The Gaussian-supervector SVM that used to live here is now the library's ``gsv_svm``
(:func:`devicepool.estimators.make_gsv_svm`), registered with the protocol.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC


def _mean_std(X):
    return np.stack([np.concatenate([u.mean(0), u.std(0)]) for u in X])


def _percentile_stats(X):
    return np.stack([np.concatenate([u.mean(0), u.std(0), np.percentile(u, 10, axis=0),
                                     np.percentile(u, 90, axis=0)]) for u in X])


def make_logreg_meanstd(random_state=None, **params):
    return make_pipeline(FunctionTransformer(_mean_std), StandardScaler(),
                         LogisticRegression(max_iter=5000, C=params.get("C", 1.0)))


def make_svm_percentiles(random_state=None, **params):
    return make_pipeline(FunctionTransformer(_percentile_stats), StandardScaler(),
                         SVC(kernel="rbf", C=params.get("C", 10.0), gamma="scale"))


def make_gsv_svm_nonspeech(random_state=None, sample_rate=16000, **params):
    """The library's GSV-SVM on the non-speech frames only (after Kritsiolis & Kotropoulos:
    the device is modelled where the speaker is silent); reads waveforms."""
    from devicepool.estimators import make_gsv_svm
    from devicepool.features import MFCC, FilterBank

    pipe = make_gsv_svm(random_state, **params)
    pipe.steps[0] = ("mfcc", MFCC(frames="nonspeech", filterbank=FilterBank(sample_rate=sample_rate)))
    return pipe


#: waveform-input references (``feature="waveform"``), run only when named
WAVEFORM_REFERENCES = {
    "gsv_svm_nonspeech": ("GSV-SVM on non-speech frames (Kritsiolis & Kotropoulos)",
                          make_gsv_svm_nonspeech),
}

REFERENCES = {
    "logreg_meanstd": ("mean/std log-filterbank + logistic regression", make_logreg_meanstd),
    "svm_percentiles": ("per-band mean/std/p10/p90 + RBF-SVM (Hanilci)", make_svm_percentiles),
}


def register_references():
    """Register the references with the protocol (FilterBank features; the waveform ones read the samples)."""
    from devicepool.protocol import register_model

    for name, (label, factory) in REFERENCES.items():
        register_model(name, factory, feature="fbank", label=label)
    for name, (label, factory) in WAVEFORM_REFERENCES.items():
        register_model(name, factory, feature="waveform", label=label)
    return list(REFERENCES)
