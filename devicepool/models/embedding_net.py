"""Device-embedding networks for margin-loss pretraining: ``DeviceEmbeddingNet``, ``AAMSoftmax``.

A ``DeviceEmbeddingNet`` maps a log filter-bank utterance ``(B, T, F)`` (zero-padded,
with ``lengths``) to a fixed-size device embedding. Two backbones:

``"ecapa"`` (default)
    an ECAPA-TDNN-style network (Desplanques et al., 2020) at a small width: a
    5-frame convolution of stride 2 (20 ms steps), three SE-Res2 blocks with dilations 2, 3, 4, multi-layer
    feature aggregation, attentive statistics pooling (masked mean and standard
    deviation with global context), then a linear layer to ``embedding_dim``.
``"da_cnn"``
    the paper's DA-CNN (:class:`~devicepool.models.DACNN`) pooled vector, then a linear
    layer to ``embedding_dim``.

Both first remove the utterance's mean log energy over all valid frames and bands (an
overall gain is no device property; the spectral shape, which is, stays), then
standardise each band with fixed buffers (:meth:`DeviceEmbeddingNet.fit_input_statistics`).
Padded frames are zeroed after every layer, so padding never changes an embedding.

``AAMSoftmax`` is the additive angular margin head (ArcFace, Deng et al., 2019) that
trains it over device classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .da_cnn import DACNN

__all__ = ["AAMSoftmax", "DeviceEmbeddingNet"]


def _mask(lengths, T, device):
    """(B, 1, T) float mask of valid frames."""
    return (torch.arange(T, device=device)[None, :] < lengths[:, None]).unsqueeze(1).float()


def _masked_mean(x, mask, n):
    return (x * mask).sum(-1) / n


class _ConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel=1, dilation=1, stride=1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, stride=stride,
                              padding=dilation * (kernel // 2))
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x, mask):
        return self.bn(F.relu(self.conv(x))) * mask


class _SERes2Block(nn.Module):
    def __init__(self, channels, dilation, scale=4, se_hidden=64):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.pre = _ConvBN(channels, channels)
        self.convs = nn.ModuleList(_ConvBN(width, width, 3, dilation) for _ in range(scale - 1))
        self.post = _ConvBN(channels, channels)
        self.se1 = nn.Linear(channels, se_hidden)
        self.se2 = nn.Linear(se_hidden, channels)

    def forward(self, x, mask, n):
        y = self.pre(x, mask)
        parts = list(torch.chunk(y, self.scale, dim=1))
        out, prev = [parts[0]], None
        for i, conv in enumerate(self.convs):
            inp = parts[i + 1] if prev is None else parts[i + 1] + prev
            prev = conv(inp, mask)
            out.append(prev)
        y = self.post(torch.cat(out, dim=1), mask)
        s = torch.sigmoid(self.se2(F.relu(self.se1(_masked_mean(y, mask, n)))))
        return (x + y * s.unsqueeze(-1)) * mask


class _AttentiveStats(nn.Module):
    """Masked attentive statistics pooling with global context (ECAPA): -> (B, 2C)."""

    def __init__(self, channels, hidden=64):
        super().__init__()
        self.attn = nn.Sequential(nn.Conv1d(3 * channels, hidden, 1), nn.Tanh(),
                                  nn.Conv1d(hidden, channels, 1))

    def forward(self, x, mask, n):
        mean = _masked_mean(x, mask, n)
        std = torch.sqrt(_masked_mean((x - mean.unsqueeze(-1)) ** 2, mask, n).clamp_min(1e-6))
        T = x.shape[-1]
        ctx = torch.cat([x, mean.unsqueeze(-1).expand(-1, -1, T), std.unsqueeze(-1).expand(-1, -1, T)], 1)
        score = self.attn(ctx).masked_fill(mask == 0, float("-inf"))
        w = torch.softmax(score, dim=-1)
        mu = (w * x).sum(-1)
        sd = torch.sqrt(((w * x * x).sum(-1) - mu * mu).clamp_min(1e-6))
        return torch.cat([mu, sd], dim=1)


class DeviceEmbeddingNet(nn.Module):
    """Utterance -> device embedding (see the module docstring).

    Parameters
    ----------
    n_features : int
        Bands per input frame.
    backbone : {"ecapa", "da_cnn"}, default="ecapa"
    channels : int, default=96
        ECAPA width (``"da_cnn"``: the DA-CNN's convolution channels are its default 40).
    embedding_dim : int, default=128

    Examples
    --------
    >>> import torch
    >>> net = DeviceEmbeddingNet(n_features=64).eval()
    >>> net(torch.randn(2, 150, 64), torch.tensor([150, 90])).shape
    torch.Size([2, 128])
    """

    def __init__(self, n_features: int, backbone: str = "ecapa", channels: int = 96,
                 embedding_dim: int = 128):
        super().__init__()
        if backbone not in ("ecapa", "da_cnn"):
            raise ValueError(f"backbone must be 'ecapa' or 'da_cnn'; got {backbone!r}")
        self.n_features, self.backbone = int(n_features), backbone
        self.channels, self.embedding_dim = int(channels), int(embedding_dim)
        self.register_buffer("band_mean", torch.zeros(self.n_features))
        self.register_buffer("band_std", torch.ones(self.n_features))
        if backbone == "ecapa":
            c = self.channels
            self.stem = _ConvBN(self.n_features, c, 5, stride=2)
            self.blocks = nn.ModuleList(_SERes2Block(c, d) for d in (2, 3, 4))
            self.mfa = _ConvBN(3 * c, 3 * c)
            self.pool = _AttentiveStats(3 * c)
            pooled = 6 * c
        else:
            self.dacnn = DACNN(n_classes=2, n_bands=self.n_features, utterance_norm=0)  # gain: remove_gain
            pooled = self.dacnn.embedding_dim
        self.pool_bn = nn.BatchNorm1d(pooled)
        self.project = nn.Linear(pooled, self.embedding_dim)
        self.out_bn = nn.BatchNorm1d(self.embedding_dim)

    @staticmethod
    def remove_gain(x, lengths):
        """Subtract each utterance's mean over its valid frames and all bands: (B, T, F)."""
        m = _mask(lengths, x.shape[1], x.device).transpose(1, 2)  # (B, T, 1)
        mean = (x * m).sum((1, 2)) / (lengths.to(x.dtype) * x.shape[2])
        return (x - mean[:, None, None]) * m

    def fit_input_statistics(self, frames):
        """Set the per-band standardisation from gain-removed training frames ``(n, F)``."""
        frames = torch.as_tensor(frames, dtype=torch.float64)
        self.band_mean.copy_(frames.mean(0).float())
        self.band_std.copy_(frames.std(0).clamp_min(1e-3).float())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, embedding_dim)`` of ``x`` ``(B, T, n_features)`` (zero-padded)."""
        lengths = lengths.to(x.device)
        x = self.remove_gain(x, lengths)
        m = _mask(lengths, x.shape[1], x.device).transpose(1, 2)
        x = (x - self.band_mean) / self.band_std * m
        if self.backbone == "da_cnn":
            pooled = self.dacnn.embed(x, lengths)
        else:
            # the stem halves the frame rate (20 ms steps): a device is no faster than that
            half = (lengths + 1) // 2
            mask = _mask(half, (x.shape[1] + 1) // 2, x.device)
            n = half.to(x.dtype).unsqueeze(1)
            h = self.stem(x.transpose(1, 2), mask)
            outs = []
            for block in self.blocks:
                h = block(h, mask, n)
                outs.append(h)
            h = self.mfa(torch.cat(outs, 1), mask)
            pooled = self.pool(h, mask, n)
        return self.out_bn(self.project(self.pool_bn(pooled)))

    embed = forward


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax over ``n_classes``: ``loss(emb, y)``.

    Parameters
    ----------
    embedding_dim, n_classes : int
    margin : float, default=0.2
        Angular margin ``m`` (radians) added to the target class's angle.
    scale : float, default=30.0
    """

    def __init__(self, embedding_dim, n_classes, margin=0.2, scale=30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embedding_dim) * 0.01)
        self.margin, self.scale = float(margin), float(scale)

    def logits(self, emb, y=None, margin=None):
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        if y is None:
            return self.scale * cos
        m = self.margin if margin is None else float(margin)
        target = cos.gather(1, y[:, None])
        sin = torch.sqrt(1 - target**2)
        phi = target * math.cos(m) - sin * math.sin(m)
        # beyond theta + m > pi, fall back to a monotone continuation (ArcFace's "easy margin" off)
        phi = torch.where(target > math.cos(math.pi - m), phi, target - math.sin(math.pi - m) * m)
        return self.scale * cos.scatter(1, y[:, None], phi)

    def forward(self, emb, y, margin=None):
        return F.cross_entropy(self.logits(emb, y, margin), y)
