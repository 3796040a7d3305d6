"""DA-CNN: dual (time and frequency-band) attention pooling CNN (Table 1, CNN-2)."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import AttentionLSTM, TimeAttentionCNN, resolve_width
from ._contract import BatchAttention

__all__ = ["DACNN"]


class DACNN(TimeAttentionCNN):
    """Dual attention pooling CNN for recording-device classification.

    Architecture (the paper's Table 1, with the readings of its ambiguous points):

    ============================  ==========================================================
    input                         ``(B, T, 24)`` log filter-bank frames, zero-padded,
                                  standardised per band with fixed buffers
    CNN-2                         conv 3x3/40 - pool 2x1; conv 3x3/40 - pool 1x1;
                                  conv 3x3/40 - pool 2x1 (``same`` padding, masked batch
                                  norm unless ``batch_norm=False``, ReLU, padded frames
                                  zeroed after each conv, ceil-mode pooling)
                                  -> ``(B, 40, ceil(T/4), 24)``: the 24 bands are kept
    LSTM attention-1 (time)       LSTM 24 -> LSTM 1, masked 4x1 mean pooling ->
                                  ``w_t = softmax_t(g_t * score_t)`` over valid frames
    LSTM attention-2 (band)       LSTM 24 -> LSTM 24 on the input frames, masked 4x1
                                  mean pooling -> ``(B, ceil(T/4), 24)``; averaged over
                                  the valid output frames -> ``(B, 24)``;
                                  ``w_k = softmax_k(g_k * score_k)`` over the 24 bands
    eq. 2                         ``K' = sum_k (sum_t w_t^k f_t^k) w_k``. The time weight
                                  is shared by all bands (``w_t^k = w_t``: attention-1
                                  has one output unit), ``f_t^k`` is the 40-channel CNN
                                  output at frame t and band k. Two readings, chosen by
                                  ``band_pooling``:

                                  * ``"preserve"`` (default): the 24 band-weighted,
                                    time-pooled vectors ``24 w_k sum_t w_t f_t^k`` are
                                    kept apart -> 40 x 24 = 960 values (which band
                                    carried what survives);
                                  * ``"sum"``: eq. 2 as printed, the sum over bands ->
                                    40 values.
    classification network-2      dense 120 (ReLU); dense n_classes
    ============================  ==========================================================

    ``g_t`` and ``g_k`` are learned scalar gains (init 1): the LSTM outputs are
    bounded in [-1, 1] and the gain lets training sharpen the softmax.

    Why two readings: the sum of eq. 2 drops *where* in frequency each feature was
    found, and a device's fingerprint is exactly where its response and codec cut
    in. Measured on the embedded corpus (``docs/models.md``), the band-preserving
    reading is far more accurate, so it is the default; ``band_pooling="sum"`` is the
    paper's printed equation. The factor 24 (``n_bands``) keeps the preserved vector
    on the scale of the sum (the band weights average ``1/24``).

    Parameters
    ----------
    n_classes : int
    n_bands : int, default=24
        Input bands; also the width of the CNN output and of attention-2
        (``n_features``, the contract's name for the input width, is accepted too).
    channels : int, default=40
    attention_hidden : int, default=24
        Units of the first LSTM of both attention networks.
    hidden : int, default=120
    dropout : float, default=0.0
    band_pooling : {"preserve", "sum"}, default="preserve"
        Reading of eq. 2 (see above); ``"sum"`` is the equation as printed.
    batch_norm : bool, default=True
        Masked batch normalisation after each convolution
        (:class:`~devicepool.models._blocks.MaskedBatchNorm2d`; not in the paper, which
        ``batch_norm=False`` reproduces). Its training statistics ignore padded frames and
        prediction uses running statistics, so padding never changes an output.
    utterance_norm : int, default=2
        Cepstral coefficients of each utterance's mean log spectrum removed before the
        standardisation (devicepool's: 2 removes the level and the tilt; 0 is the
        paper's input); see :class:`~devicepool.models._blocks.InputNormalisation`.

    Examples
    --------
    >>> import torch
    >>> from devicepool.models import DACNN
    >>> net = DACNN(n_classes=5)
    >>> out = net.attention(torch.randn(2, 301, 24), torch.tensor([301, 7]))
    >>> out["time"].shape, out["band"].shape
    (torch.Size([2, 76]), torch.Size([2, 24]))
    >>> net.embedding_dim, DACNN(n_classes=5, band_pooling="sum").embedding_dim
    (960, 40)
    """

    def __init__(self, n_classes: int, n_bands: int | None = None, channels: int = 40,
                 attention_hidden: int = 24, hidden: int = 120, dropout: float = 0.0,
                 band_pooling: str = "preserve", batch_norm: bool = True,
                 n_features: int | None = None, utterance_norm: int = 2):
        n_bands = resolve_width(n_bands, n_features, "n_bands", 24)
        if band_pooling not in ("preserve", "sum"):
            raise ValueError(f"band_pooling must be 'preserve' or 'sum'; got {band_pooling!r}")
        self.band_pooling = band_pooling
        dim = int(channels) * int(n_bands) if band_pooling == "preserve" else int(channels)
        super().__init__(n_classes, n_bands, channels, [(2, 1), (1, 1), (2, 1)],
                         attention_hidden, hidden, dropout, batch_norm=batch_norm,
                         embedding_dim=dim, utterance_norm=utterance_norm)

    def _add_attention(self, attention_hidden):
        self.attention_band = AttentionLSTM(self.n_bands, attention_hidden, self.n_bands,
                                            pool=self.time_reduction)
        self.band_gain = nn.Parameter(torch.ones(()))

    def _pool(self, x, lengths):
        x, lengths, fmap, out_len, tmask, w_time = self._time_attention(x, lengths)
        s_band = self.attention_band(x, lengths)                     # (B, T', K)
        s_band = (s_band * tmask.unsqueeze(-1)).sum(1) / out_len.unsqueeze(1).to(s_band.dtype)
        w_band = torch.softmax(self.band_gain * s_band, dim=1)       # (B, K)
        per_band = torch.einsum("bctk,bt->bck", fmap, w_time)        # sum_t w_t f_t^k
        if self.band_pooling == "sum":
            K = torch.einsum("bck,bk->bc", per_band, w_band)         # eq. 2 as printed
        else:
            K = (per_band * (w_band * self.n_bands).unsqueeze(1)).flatten(1)  # (B, C * K)
        return K, BatchAttention(w_time, w_band, self.time_reduction)

    def __setstate__(self, state):
        # modules pickled before the readings were parameters used the paper's
        state.setdefault("band_pooling", "sum")
        super().__setstate__(state)
