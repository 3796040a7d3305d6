"""Forensic device comparison: calibrated likelihood ratios and open-set identification.

The question "was this recording made with this device?" is answered as evidence, a
likelihood ratio (LR) of two hypotheses:

* **H1**: the questioned recording was made with the reference device;
* **H2**: it was made with another device, of the relevant population: the devices the
  calibration data represent.

``LR > 1`` supports H1, ``LR < 1`` supports H2; the LR states how much more probable
the observed comparison is under H1 than under H2, leaving the prior odds to the court.
The LR is only as valid as its calibration data: they should be recordings of devices
like the casework's (same kinds, conditions, durations), by speakers other than the
questioned recording's.

Layer: above :mod:`devicepool.estimators`, below :mod:`devicepool.protocol`; imports
numpy, scipy, scikit-learn and devicepool's lower layers only.

* :mod:`~devicepool.forensic.metrics` -- :func:`cllr`, :func:`cllr_min`,
  :func:`cllr_cal`, :func:`eer`, :func:`elub_bounds`, :func:`tippett_data`, :func:`det_data`,
  :func:`ece_data` (log10 LRs and labels 1 = H1, 0 = H2);
* :mod:`~devicepool.forensic.scoring` -- :class:`CosineScorer`, :class:`PLDAScorer`,
  :class:`SNormCosineScorer`;
* :mod:`~devicepool.forensic.calibration` -- :class:`LogisticCalibrator`,
  :class:`IsotonicCalibrator` (score -> log10 LR);
* :mod:`~devicepool.forensic.lr` -- :class:`DeviceLR` (embedder -> scorer ->
  calibrator);
* :mod:`~devicepool.forensic.enrolment` -- :class:`EnrolledDevices` (open-set
  identification by enrolment with the pretrained embedding: "unknown device" when no
  enrolled device is supported);
* :mod:`~devicepool.forensic.coverage` -- :func:`coverage_warnings` (recordings outside
  what a calibration covered);
* :mod:`~devicepool.forensic.openset` -- :class:`OpenSetClassifier` and
  :data:`UNKNOWN` (identification that may answer "unknown device");
* :mod:`~devicepool.forensic.verbal` -- :func:`verbal_equivalent` (the ENFSI-style
  verbal scale of a log10 LR);
* :mod:`~devicepool.forensic.plots` -- :func:`plot_tippett`, :func:`plot_det`,
  :func:`plot_ece` (matplotlib, optional).

Fitted :class:`DeviceLR` and :class:`OpenSetClassifier` are saved by
:func:`devicepool.persistence.dump` (no pickled code); their ``to_payload()`` and
``from_payload()`` give and take the dict it writes.
"""

from .calibration import IsotonicCalibrator, LogisticCalibrator
from .coverage import ABSTAIN, coverage_of, coverage_warnings, reasons_to_abstain, recording_conditions
from .enrolment import EnrolledDevices, enrolment_references
from .lr import DeviceLR, cross_validated_llrs
from .metrics import (
    DetData,
    EceData,
    TippettData,
    cllr,
    cllr_cal,
    cllr_min,
    det_data,
    ece_data,
    eer,
    elub_bounds,
    tippett_data,
)
from .openset import UNKNOWN, OpenSetClassifier
from .plots import plot_det, plot_ece, plot_tippett
from .scoring import CosineScorer, PLDAScorer, SNormCosineScorer
from .verbal import VERBAL_SCALE, verbal_equivalent

__all__ = [
    "UNKNOWN",
    "VERBAL_SCALE",
    "CosineScorer",
    "DetData",
    "DeviceLR",
    "EnrolledDevices",
    "enrolment_references",
    "coverage_of",
    "coverage_warnings",
    "recording_conditions",
    "reasons_to_abstain",
    "ABSTAIN",
    "EceData",
    "IsotonicCalibrator",
    "LogisticCalibrator",
    "OpenSetClassifier",
    "PLDAScorer",
    "SNormCosineScorer",
    "TippettData",
    "cllr",
    "cllr_cal",
    "cllr_min",
    "cross_validated_llrs",
    "det_data",
    "ece_data",
    "eer",
    "elub_bounds",
    "plot_det",
    "plot_ece",
    "plot_tippett",
    "tippett_data",
    "verbal_equivalent",
]
