"""SA-CNN: single (time) attention pooling CNN (Table 1, CNN-1 + LSTM attention-1)."""

from __future__ import annotations

import math

import torch

from ._blocks import TimeAttentionCNN, resolve_width
from ._contract import BatchAttention

__all__ = ["SACNN"]


class SACNN(TimeAttentionCNN):
    """Single attention pooling CNN for recording-device classification.

    Architecture (the paper's Table 1, with the readings of its ambiguous points):

    ============================  ==========================================================
    input                         ``(B, T, 24)`` log filter-bank frames, zero-padded;
                                  standardised per band with fixed buffers
                                  (:class:`~devicepool.models._blocks.InputNormalisation`)
    CNN-1                         conv 3x3/20 - pool 2x1; conv 3x3/20 - pool 1x2;
                                  conv 3x3/20 - pool 2x1. ``same`` zero padding, masked
                                  batch norm (devicepool's; ``batch_norm=False`` for the
                                  paper), ReLU, padded frames zeroed after each conv,
                                  ceil-mode pooling -> ``(B, 20, ceil(T/4), 12)``
    LSTM attention-1              LSTM 24 -> LSTM 1 on the (standardised) input frames,
                                  masked mean over windows of 4 frames -> one score
                                  per CNN output frame ``(B, ceil(T/4))``
    time weights ``w_t``          ``softmax_t(g * score_t)`` over the **valid** output
                                  frames only (padded frames get exactly 0); ``g`` is a
                                  learned scalar gain (init 1) since the 1-unit LSTM
                                  output is bounded in [-1, 1]
    eq. 1                         ``K = sum_t w_t f_t`` with ``f_t`` the ``(20, 12)``
                                  CNN output at frame t
    classification network-1      ``band_pooling="mean"``: average pooling over the 12
                                  frequency bands -> 20-d embedding (the paper);
                                  ``"preserve"`` (default): the 20 x 12 values of ``K``
                                  kept apart -> 240-d; then dense 60 (ReLU); dense
                                  n_classes
    ============================  ==========================================================

    The time weights sum to one, so ``K`` is a weighted *average* of frames and the
    prediction does not depend on the utterance length as such. Averaging ``K`` over
    frequency drops where in frequency a feature was found, as the band sum of DA-CNN's
    eq. 2 does; both readings are measured in ``docs/models.md``.

    Parameters
    ----------
    n_classes : int
        Number of devices (output logits).
    n_bands : int, default=24
        Filter-bank bands per input frame (``n_features``, the contract's name for the
        input width, is accepted too).
    channels : int, default=20
        Channels of each of the three conv layers.
    attention_hidden : int, default=24
        Units of the first attention LSTM.
    hidden : int, default=60
        Width of the dense layer of the classification network.
    dropout : float, default=0.0
        Dropout before the output layer (the paper mentions none).
    band_pooling : {"preserve", "mean"}, default="preserve"
        ``"mean"`` averages ``K`` over the 12 frequency bands (the paper);
        ``"preserve"`` keeps them apart.
    batch_norm : bool, default=True
        Masked batch normalisation after each convolution
        (:class:`~devicepool.models._blocks.MaskedBatchNorm2d`; not in the paper, which
        ``batch_norm=False`` reproduces). Its training statistics ignore padded frames and
        prediction uses running statistics, so padding never changes an output.
    utterance_norm : int, default=2
        Cepstral coefficients of each utterance's mean log spectrum removed before the
        standardisation (devicepool's: 2 removes the level and the tilt; 0 is the
        paper's input); see :class:`~devicepool.models._blocks.InputNormalisation`.

    Attributes
    ----------
    time_reduction : int
        4: the CNN output has ``ceil(T / 4)`` frames.
    embedding_dim : int
        Size of :meth:`embed`'s output (``channels * 12`` or ``channels``).

    Examples
    --------
    >>> import torch
    >>> from devicepool.models import SACNN
    >>> net = SACNN(n_classes=5)
    >>> x = torch.randn(2, 300, 24)
    >>> net(x, torch.tensor([300, 120])).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_classes: int, n_bands: int | None = None, channels: int = 20,
                 attention_hidden: int = 24, hidden: int = 60, dropout: float = 0.0,
                 band_pooling: str = "preserve", batch_norm: bool = True,
                 n_features: int | None = None, utterance_norm: int = 2):
        n_bands = resolve_width(n_bands, n_features, "n_bands", 24)
        if band_pooling not in ("preserve", "mean"):
            raise ValueError(f"band_pooling must be 'preserve' or 'mean'; got {band_pooling!r}")
        self.band_pooling = band_pooling
        pools = [(2, 1), (1, 2), (2, 1)]
        n_out_bands = int(n_bands)
        for _, pool_freq in pools:  # ceil-mode pooling, as MaskedConvStack.out_bands
            n_out_bands = math.ceil(n_out_bands / pool_freq)
        dim = int(channels) * n_out_bands if band_pooling == "preserve" else int(channels)
        super().__init__(n_classes, n_bands, channels, pools, attention_hidden, hidden, dropout,
                         batch_norm=batch_norm, embedding_dim=dim, utterance_norm=utterance_norm)

    def _pool(self, x, lengths):
        _, _, fmap, _, _, w_time = self._time_attention(x, lengths)   # fmap (B, C, T', F')
        K = torch.einsum("bctf,bt->bcf", fmap, w_time)              # eq. 1
        emb = K.flatten(1) if self.band_pooling == "preserve" else K.mean(dim=2)
        return emb, BatchAttention(w_time, None, self.time_reduction)

    def __setstate__(self, state):
        # modules pickled before the readings were parameters used the paper's
        state.setdefault("band_pooling", "mean")
        super().__setstate__(state)
