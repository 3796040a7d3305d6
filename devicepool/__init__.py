"""devicepool: which recording device captured a speech file?

Scikit-learn compatible implementation of the dual attention pooling network for
recording-device classification (Naini, Singhal & Ghosh, *Dual attention pooling
network for recording device classification using neutral and whispered speech*),
its single-attention variant and the DFT-CNN baseline of Verma & Khanna, with
feature transformers, corpus loaders, the paper's evaluation protocol and a CLI.

Public names are imported lazily so that ``import devicepool`` stays cheap (torch
is only imported when an estimator or model is used).
"""

from importlib import import_module

__version__ = "0.6.0.dev0"

_LAZY = {
    # features
    "FilterBank": "devicepool.features",
    "DFTMagnitude": "devicepool.features",
    "MFCC": "devicepool.features",
    "Waveform": "devicepool.features",
    "voicing_labels": "devicepool.features",
    "load_audio": "devicepool.audio",
    # estimators
    "SACNNClassifier": "devicepool.estimators",
    "DACNNClassifier": "devicepool.estimators",
    "DFTCNNClassifier": "devicepool.estimators",
    "GaussianSupervector": "devicepool.estimators",
    "GMMUBMClassifier": "devicepool.estimators",
    "FusionClassifier": "devicepool.estimators",
    "DeviceEmbedding": "devicepool.estimators",
    # datasets
    "load_mobiphone": "devicepool.datasets",
    "load_wspire": "devicepool.datasets",
    "load_audio_folder": "devicepool.datasets",
    "make_device_corpus": "devicepool.datasets",
    "random_devices": "devicepool.datasets",
    # protocol
    "run_protocol": "devicepool.protocol",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'devicepool' has no attribute {name!r}")


def __dir__():
    return __all__
