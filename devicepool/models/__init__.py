"""Plain :mod:`torch` modules of the paper's networks (no sklearn or skorch here).

* :class:`SACNN` -- single (time) attention pooling CNN, Table 1 CNN-1.
* :class:`DACNN` -- dual (time + band) attention pooling CNN, Table 1 CNN-2.
* :class:`DFTCNN` -- the DFT-CNN baseline over 0.5 s magnitude spectra.

All take a zero-padded batch ``x`` ``(B, T, F)`` and ``lengths`` ``(B,)`` (int64) and
return logits ``(B, n_classes)``; padding never changes the output of a valid
utterance. :func:`forward_flops` counts a forward pass's FLOPs. What any network must
offer to be wrapped by a classifier is the *module contract*
(:mod:`devicepool.models._contract`): :func:`check_module` checks it,
:class:`ModuleOutputs` and :class:`BatchAttention` are its typed results;
:class:`AttentionWeights` is the per-utterance (numpy) attention the classifiers give.
"""

from ._blocks import forward_flops, lengths_to_mask, masked_softmax
from ._contract import AttentionWeights, BatchAttention, ModuleOutputs, check_module, module_outputs
from .da_cnn import DACNN
from .dft_cnn import DFTCNN
from .sa_cnn import SACNN

__all__ = ["SACNN", "DACNN", "DFTCNN", "AttentionWeights", "BatchAttention", "ModuleOutputs", "check_module",
           "module_outputs", "forward_flops", "lengths_to_mask", "masked_softmax"]
