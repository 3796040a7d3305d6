"""DFT-CNN: the Verma & Khanna style baseline, a CNN over 0.5 s |DFT| segments."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import InputNormalisation, lengths_to_mask, resolve_width
from ._contract import ModuleOutputs

__all__ = ["DFTCNN"]


class DFTCNN(nn.Module):
    """CNN over the magnitude spectrum of 0.5 s segments (DFT-CNN baseline).

    Verma & Khanna classify the recording device from the 4001-bin |DFT| of a 0.5 s
    speech segment (16 kHz) with a CNN whose exact layers are not published. This is
    a small 1-D CNN of that kind, sliding along the frequency axis:

    =========================  ==============================================================
    compression                ``log(|X| + 1e-5)`` then per-bin standardisation with fixed
                               buffers set from the training segments
    conv block 1..3            Conv1d(k=9, 'same') -> ReLU -> MaxPool1d(4, ceil):
                               1 -> 16 -> 32 -> 64 channels, 4001 -> 1001 -> 251 -> 63 bins
    conv block 4               Conv1d(64 -> 64, k=9, 'same') -> ReLU
    frequency pooling          AdaptiveAvgPool1d(16): keeps coarse spectral position
                               (device colouration is a function of frequency)
    dense                      1024 -> 128 (ReLU) -> dropout -> n_classes
    =========================  ==============================================================

    One segment gives one vector of logits (:meth:`segment_logits`). An utterance of
    S segments is scored by the **mean of its segments' log-probabilities**:
    ``forward`` returns ``mean_s log_softmax(z_s)``; its softmax is the normalised
    geometric mean of the segment posteriors (a product-of-experts vote). With one
    segment, ``forward`` equals ``log_softmax(z)``, so the cross-entropy of a
    segment is unchanged.

    Parameters
    ----------
    n_classes : int
    n_bins : int, default=4001
        Magnitude bins per segment (``segment_samples // 2 + 1``; ``n_features``, the
        contract's name for the input width, is accepted too).
    channels : tuple of int, default=(16, 32, 64, 64)
    kernel_size : int, default=9
    hidden : int, default=128
    dropout : float, default=0.0

    Examples
    --------
    >>> import torch
    >>> from devicepool.models import DFTCNN
    >>> net = DFTCNN(n_classes=3)
    >>> x = torch.rand(2, 6, 4001)          # 2 utterances, up to 6 segments
    >>> net(x, torch.tensor([6, 2])).shape
    torch.Size([2, 3])
    """

    def __init__(self, n_classes: int, n_bins: int | None = None, channels=(16, 32, 64, 64),
                 kernel_size: int = 9, hidden: int = 128, dropout: float = 0.0,
                 freq_pool: int = 16, n_features: int | None = None):
        super().__init__()
        n_bins = resolve_width(n_bins, n_features, "n_bins", 4001)
        if int(n_classes) < 1 or int(n_bins) < 1:
            raise ValueError("n_classes and n_bins must be >= 1")
        self.n_classes = int(n_classes)
        self.n_bins = int(n_bins)
        self.n_features = self.n_bins
        self.norm = InputNormalisation(self.n_bins)
        layers = []
        c_in = 1
        for i, c in enumerate(channels):
            layers += [nn.Conv1d(c_in, c, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(4, ceil_mode=True))
            c_in = c
        layers.append(nn.AdaptiveAvgPool1d(freq_pool))
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c_in * freq_pool, hidden), nn.ReLU())
        self.embedding_dim = int(hidden)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, self.n_classes))

    @staticmethod
    def compress(x: torch.Tensor) -> torch.Tensor:
        """Log compression of magnitudes: ``log(max(x, 0) + 1e-5)``."""
        return torch.log(x.clamp_min(0) + 1e-5)

    def segment_hidden(self, segments: torch.Tensor) -> torch.Tensor:
        """Hidden (128-d) representation of segments ``(N, n_bins)``."""
        if segments.dim() != 2 or segments.shape[1] != self.n_bins:
            raise ValueError(
                f"segments must be (N, {self.n_bins}); got shape {tuple(segments.shape)}"
            )
        z = self.norm(self.compress(segments)).unsqueeze(1)
        return self.hidden(self.features(z))

    def segment_logits(self, segments: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` for segments ``(N, n_bins)``."""
        return self.out(self.segment_hidden(segments))

    def _valid(self, x, lengths):
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, n_segments, n_bins); got shape {tuple(x.shape)}")
        lengths = torch.as_tensor(lengths, device=x.device).long()
        if x.shape[0] and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
            raise ValueError(f"lengths must lie in [1, {x.shape[1]}]")
        mask = lengths_to_mask(lengths, x.shape[1])
        batch_index = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand_as(mask)[mask]
        return x[mask], batch_index, lengths

    def _segment_mean(self, values, batch_index, lengths, B):
        out = values.new_zeros(B, values.shape[1]).index_add_(0, batch_index, values)
        return out / lengths.unsqueeze(1).to(values.dtype)

    def fit_input_statistics(self, chunks) -> DFTCNN:
        """Set the per-bin standardisation from raw training segments ``(n_i, n_bins)``
        (log-compressed here first)."""
        self.norm.fit_chunks(self.compress(c) for c in chunks)
        return self

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean segment log-probabilities ``(B, n_classes)`` (use as logits)."""
        return self.outputs(x, lengths).logits

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean over segments of the 128-d hidden layer, ``(B, hidden)``."""
        segs, idx, lengths = self._valid(x, lengths)
        return self._segment_mean(self.segment_hidden(segs), idx, lengths, x.shape[0])

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> ModuleOutputs:
        """Logits (mean segment log-probabilities) and embedding from one pass."""
        segs, idx, lengths = self._valid(x, lengths)
        h = self.segment_hidden(segs)
        logp = torch.log_softmax(self.out(h), dim=1)
        B = x.shape[0]
        return ModuleOutputs(self._segment_mean(logp, idx, lengths, B),
                             self._segment_mean(h, idx, lengths, B), None)
