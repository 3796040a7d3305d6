"""scikit-learn classifiers wrapping the SA-CNN, DA-CNN and DFT-CNN modules (skorch).

Layout: :mod:`._data` (datasets, collate, crops, bucketing, validation split,
inference batches), :mod:`._callbacks` (skorch callbacks), :mod:`._base` (the shared
classifier over the module contract of :mod:`devicepool.models._contract`),
:mod:`.classifiers` (the three
classifiers); the classical systems in :mod:`.classical` (:class:`GaussianSupervector`,
:class:`GMMUBMClassifier`, over :mod:`._gmm`) and :mod:`.recipes` (``make_gsv_svm``,
``make_gmm_ubm``), and score-level fusion in :mod:`.fusion` (:class:`FusionClassifier`,
over :mod:`._linear_fusion`).

The classifiers take an *utterance set*: a list (or 1-D object array) of per-utterance
float arrays ``(n_frames, n_features)`` of any length, e.g. the output of
:class:`~devicepool.features.FilterBank` (SA/DA-CNN) or
:class:`~devicepool.features.DFTMagnitude` (DFT-CNN). A 3-D numeric array
``(n_utterances, n_frames, n_features)`` is a set of equal-length utterances, and a
2-D numeric array ``(n_utterances, n_features)`` -- the tabular convention -- is read
as a set of one-frame utterances (one segment each for DFT-CNN).

Batches are padded per batch and masked: padding never changes a prediction.

Training (devicepool's recipe; the paper gives only Adam, cross-entropy and "stop when
the validation error increases", and that reading underfits small corpora, see
``docs/models.md``):

* **random crops**: each training utterance is cut to a random window of
  ``crop_frames`` frames, drawn afresh every epoch (shorter utterances are used whole,
  masked); prediction always sees whole utterances;
* **a step budget**: training lasts ``max_steps`` optimizer steps (rounded up to whole
  epochs, at most ``max_epochs``), so a corpus of 300 utterances gets as many updates as
  one of 30,000, and cost follows steps, not corpus size;
* **one-cycle learning rate** (``lr_schedule="onecycle"``): warm-up to ``lr`` over the
  first 30 % of the steps, cosine annealing after (skorch's ``LRScheduler`` with
  torch's ``OneCycleLR``);
* **internal validation** (``train_split="auto"``), held out only where it is used: by
  default (``patience=None``, ``valid_fraction="auto"``) every utterance is trained on
  and the whole budget is run. With ``patience`` set (or a numeric ``valid_fraction``),
  ``fit(X, y, groups=speakers)`` holds out whole speakers (``round(valid_fraction *
  n_speakers)``, at least one; 0.2 under ``"auto"``), so validation is judged on unseen
  speakers as the test is; without groups, that share of the utterances stratified by
  class. When the data are too small to hold anything out, no validation is used.
  Training stops after ``patience`` epochs without a better validation loss and the
  best epoch's weights are restored; ``history_`` has the validation loss and accuracy.

The defaults (``crop_frames=100``, ``max_steps=400``, ``batch_size=32``, ``lr=3e-3``) were
chosen by measurement on the embedded corpus (``docs/models.md``,
``docs/performance.md``). ``crop_frames=None, max_steps=None, lr_schedule=None,
lr=1e-3, batch_size=16, max_epochs=30, patience=5`` is the earlier, paper-like recipe.
"""

from ._base import UtteranceOutputs, check_torch_device
from ._callbacks import EarlyStoppingBest, EpochProgress, OneCycleSchedule, StopTraining
from ._data import BucketIterator, CropCollate, UtteranceDataset, collate_utterances, held_out_speakers
from ._plan import TrainingPlan
from ._routing import fit_with_groups
from .classical import GaussianSupervector, GMMUBMClassifier
from .classifiers import DACNNClassifier, DFTCNNClassifier, SACNNClassifier
from .embedding import DeviceEmbedding
from .fusion import FusionClassifier
from .recipes import make_gmm_ubm, make_gsv_svm, make_pretrained_lr

__all__ = [
    "check_torch_device",
    "SACNNClassifier",
    "DACNNClassifier",
    "DFTCNNClassifier",
    "GaussianSupervector",
    "GMMUBMClassifier",
    "FusionClassifier",
    "make_gsv_svm",
    "make_gmm_ubm",
    "make_pretrained_lr",
    "fit_with_groups",
    "held_out_speakers",
    "DeviceEmbedding",
    "UtteranceOutputs",
    "TrainingPlan",
    "UtteranceDataset",
    "BucketIterator",
    "CropCollate",
    "collate_utterances",
    "EarlyStoppingBest",
    "OneCycleSchedule",
    "EpochProgress",
    "StopTraining",
]
