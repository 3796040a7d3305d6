"""Building blocks shared by the SA-CNN, DA-CNN and DFT-CNN modules.

Everything here works on zero-padded batches ``x`` of shape ``(B, T, F)`` together
with the true lengths ``lengths`` (int64, ``(B,)``) and guarantees that the values
at valid positions never depend on the padding:

* :class:`MaskedConvStack` re-zeroes the padded frames after every convolution
  (before pooling), so that a 3x3 ``same`` convolution at the last valid frame sees
  exactly the zeros it would see on an unpadded input;
* time pooling uses ``ceil_mode``: an odd number of frames keeps its last frame
  (the window is completed with the zero padding, and since the pooled values come
  after a ReLU they are >= 0, a zero never wins a max over a valid value);
* :class:`AttentionLSTM` runs unidirectional LSTMs, which are causal: the output at
  a valid frame only depends on earlier frames, so trailing padding cannot leak in;
  its 4x1 pooling is a masked mean over the valid frames of each window;
* :func:`masked_softmax` gives padded positions exactly zero weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._contract import BatchAttention, ModuleOutputs

__all__ = [
    "lengths_to_mask",
    "pooled_lengths",
    "masked_softmax",
    "masked_mean_pool",
    "MaskedBatchNorm2d",
    "MaskedConvStack",
    "AttentionLSTM",
    "TimeAttentionCNN",
    "InputNormalisation",
    "forward_flops",
    "resolve_width",
]


def resolve_width(value, n_features, name, default):
    """The input width of a network from its own name for it (``n_bands``, ``n_bins``)
    and the contract's ``n_features`` (see :mod:`devicepool.models._contract`)."""
    if n_features is not None and value is not None and int(value) != int(n_features):
        raise ValueError(f"{name}={value} and n_features={n_features} disagree; give one of them")
    width = n_features if n_features is not None else (default if value is None else value)
    return int(width)


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask ``(B, max_len)``: True at valid frames ``t < lengths[b]``."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def pooled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Lengths after ceil-mode pooling by ``factor``: ``ceil(lengths / factor)``."""
    if factor == 1:
        return lengths
    return torch.div(lengths + factor - 1, factor, rounding_mode="floor")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` restricted to ``mask``; masked positions get weight 0.

    Rows without any valid position would be all-NaN; callers guarantee at least
    one valid position (every utterance has >= 1 frame).
    """
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim)


def masked_mean_pool(h: torch.Tensor, lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean-pool ``h`` ``(B, T, D)`` over non-overlapping windows of ``factor`` frames.

    Only valid frames count (the last window of an utterance whose length is not a
    multiple of ``factor`` averages over the frames it has). Returns
    ``(B, ceil(T / factor), D)``; windows entirely in the padding are 0.
    """
    B, T, D = h.shape
    mask = lengths_to_mask(lengths, T).to(h.dtype)
    h = h * mask.unsqueeze(-1)
    T_out = math.ceil(T / factor)
    pad = T_out * factor - T
    if pad:
        h = nn.functional.pad(h, (0, 0, 0, pad))
        mask = nn.functional.pad(mask, (0, pad))
    sums = h.reshape(B, T_out, factor, D).sum(dim=2)
    counts = mask.reshape(B, T_out, factor).sum(dim=2).clamp_min(1.0)
    return sums / counts.unsqueeze(-1)


class InputNormalisation(nn.Module):
    """Per-feature standardisation ``(x - mean) / scale`` stored as buffers, after an
    optional per-utterance removal of the level (and tilt) of the utterance's spectrum.

    The buffers start at mean 0, scale 1 (identity) and are set from training data
    by :meth:`fit_chunks` (the estimators call it once per ``fit``); they are part of
    the ``state_dict`` so a saved model carries them.

    With ``utterance_coefficients=k > 0`` every frame of an utterance first loses the
    first ``k`` DCT-II (cepstral) coefficients of the utterance's mean log spectrum
    (taken over its valid frames), measured from the training mean: ``k = 1`` removes
    the utterance's level (a gain change of the recording changes nothing), ``k = 2``
    also its spectral tilt, the slowest cosine across the bands. This is cepstral mean
    normalisation restricted to the lowest quefrencies: full cepstral mean
    normalisation (all coefficients) would remove the very channel colouration that
    identifies a device, whose band edges and resonances are sharper than a tilt, and
    ``k`` keeps them. What a speaking mode changes most in the long-term spectrum of
    the same device, the level and the source's slope (whisper has no glottal
    roll-off), is what ``k = 2`` removes.

    Parameters
    ----------
    n_features : int
        Features (log bands) per frame.
    utterance_coefficients : int, default=0
        ``k`` above, >= 0; 0 is the plain global standardisation. At most
        ``n_features - 1`` are removed (an input of one feature removes none), so
        something of every utterance is always left.
    """

    def __init__(self, n_features: int, utterance_coefficients: int = 0):
        super().__init__()
        k = int(utterance_coefficients)
        if k < 0:
            raise ValueError(f"utterance_coefficients must be >= 0; got {utterance_coefficients!r}")
        # an input of n features keeps at least one: at most n - 1 are removed
        self.utterance_coefficients = k = min(k, int(n_features) - 1)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.register_buffer("basis", _dct_rows(int(n_features), k), persistent=False)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "utterance_coefficients" not in self.__dict__:  # pickled before it existed
            self.utterance_coefficients = 0
            self._buffers["basis"] = _dct_rows(self.mean.shape[0], 0)
            self._non_persistent_buffers_set.add("basis")

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> InputNormalisation:
        """Set mean and scale from ``frames`` ``(N, n_features)`` (already compressed):
        one utterance when ``utterance_coefficients > 0``."""
        return self.fit_chunks([frames])

    @torch.no_grad()
    def fit_chunks(self, chunks) -> InputNormalisation:
        """Set mean and scale from an iterable of ``(n_i, n_features)`` frame blocks.

        Sums are accumulated in float64 block by block, so the training frames are never
        copied into one array (that copy dominated the peak memory of ``fit``). With
        ``utterance_coefficients > 0`` each block is one utterance, and mean and scale
        are those of the frames after the per-utterance removal (computed exactly from
        the same single pass: the removal shifts each utterance's frames by one vector).
        """
        n, total, total_sq, per_utt = 0, 0.0, 0.0, []
        for frames in chunks:
            frames = frames.to(self.mean.device, torch.float64)
            if frames.shape[0] == 0:
                continue
            n += frames.shape[0]
            sums = frames.sum(dim=0)
            total = total + sums
            total_sq = total_sq + (frames * frames).sum(dim=0)
            if self.utterance_coefficients:
                per_utt.append((frames.shape[0], sums))
        if n == 0:
            raise ValueError("no frames to standardise")
        mean = total / n
        if per_utt:
            # frames x - d_i with d_i = P(u_i - mean): the mean stays ``mean`` and
            # sum (x - d_i)^2 = sum x^2 - 2 sum_i d_i * s_i + sum_i n_i d_i^2
            basis = self.basis.to(torch.float64)
            counts = torch.tensor([c for c, _ in per_utt], dtype=torch.float64, device=mean.device)
            sums = torch.stack([s for _, s in per_utt])
            shift = ((sums / counts[:, None] - mean) @ basis.T) @ basis
            total_sq = total_sq - 2 * (shift * sums).sum(0) + (counts[:, None] * shift * shift).sum(0)
        if n > 1:
            std = (total_sq / n - mean * mean).clamp_min(0.0).sqrt()
        else:
            std = torch.ones_like(mean)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.scale.copy_(std.to(self.scale.dtype))
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, T, F)`` (``mask`` ``(B, T)``: its valid frames, needed when
        ``utterance_coefficients > 0``) -> the normalised frames."""
        if self.utterance_coefficients:
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            m = mask.unsqueeze(-1).to(x.dtype)
            u = (x * m).sum(1) / m.sum(1).clamp_min(1.0)                 # (B, F)
            basis = self.basis.to(x.dtype)
            x = x - (((u - self.mean) @ basis.T) @ basis).unsqueeze(1)
        return (x - self.mean) / self.scale


def _dct_rows(n, k):
    """The first ``k`` rows ``(k, n)`` of the orthonormal DCT-II matrix."""
    i = torch.arange(n, dtype=torch.float64)
    rows = [torch.cos(math.pi * q * (2 * i + 1) / (2 * n)) * math.sqrt((1 if q == 0 else 2) / n)
            for q in range(k)]
    return torch.stack(rows).float() if rows else torch.zeros(0, n)


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """Batch normalisation over channels whose training statistics ignore padding.

    In training mode the per-channel mean and variance are taken over the **valid**
    frames of the batch only (``mask`` ``(B, T)``), so the zero padding of a batch of
    unequal lengths never enters them; the running statistics are updated from the
    same masked moments. In evaluation mode the running statistics are used, which
    makes the layer a fixed per-channel affine map: a frame's output then depends
    on that frame alone, and padding invariance at prediction holds exactly.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or mask is None or bool(mask.all()):
            # no padding (e.g. a batch of equal crops): the fused kernel, same statistics
            return super().forward(x)
        return self._masked_forward(x, mask)

    def _masked_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :, None].to(x.dtype)                      # (B, 1, T, 1)
        n = m.sum() * x.shape[3]
        mean = (x * m).sum(dim=(0, 2, 3)) / n
        centred = (x - mean[None, :, None, None]) * m
        var = (centred * centred).sum(dim=(0, 2, 3)) / n
        if self.track_running_stats:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


class MaskedConvStack(nn.Module):
    """2-D CNN over ``(time, frequency)`` with masking of padded frames.

    Each layer: ``Conv2d(k x k, padding='same')`` -> [masked batch norm] -> ReLU ->
    zero padded frames -> ``MaxPool2d(pool)`` with ``ceil_mode=True``. Batch
    normalisation (``batch_norm=True``) is :class:`MaskedBatchNorm2d`: its training
    statistics come from valid frames only and at prediction it uses running
    statistics, so padding never changes a valid frame's output.

    Parameters
    ----------
    in_channels : int
    layers : sequence of (channels, (pool_time, pool_freq))
    kernel_size : int, default=3
    batch_norm : bool, default=False

    Forward: ``x`` ``(B, C_in, T, F)`` and ``lengths`` ``(B,)`` ->
    ``(B, C_out, T', F')`` and the new lengths ``ceil(lengths / prod(pool_time))``.
    """

    def __init__(self, in_channels: int, layers, kernel_size: int = 3, batch_norm: bool = False):
        super().__init__()
        convs, pools, norms = [], [], []
        c_in = in_channels
        for channels, pool in layers:
            convs.append(nn.Conv2d(c_in, channels, kernel_size, padding=kernel_size // 2,
                                   bias=not batch_norm))
            if batch_norm:
                norms.append(MaskedBatchNorm2d(channels))
            pools.append(tuple(int(p) for p in pool))
            c_in = channels
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms) if batch_norm else None
        self.pools = pools
        self.out_channels = c_in
        self.time_reduction = math.prod(p[0] for p in pools)
        self.freq_reduction = math.prod(p[1] for p in pools)

    def __setstate__(self, state):
        # stacks pickled before batch norm existed (devicepool < 0.2) have no ``norms``
        state.setdefault("_modules", {}).setdefault("norms", None)
        super().__setstate__(state)

    def out_bands(self, n_bands: int) -> int:
        """Frequency width after the stack (ceil-mode pooling)."""
        for _, pf in self.pools:
            n_bands = math.ceil(n_bands / pf)
        return n_bands

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        for i, (conv, (pt, pf)) in enumerate(zip(self.convs, self.pools)):
            x = conv(x)
            mask = lengths_to_mask(lengths, x.shape[2])
            if self.norms is not None:
                x = self.norms[i](x, mask)
            x = torch.relu(x) * mask.to(x.dtype)[:, None, :, None]
            if pt > 1 or pf > 1:
                x = nn.functional.max_pool2d(x, (pt, pf), ceil_mode=True)
                lengths = pooled_lengths(lengths, pt)
        return x, lengths


class AttentionLSTM(nn.Module):
    """Two stacked unidirectional LSTMs followed by a masked 4x1 mean pooling.

    Table 1 "LSTM attention": ``LSTM(n_in -> hidden)``, ``LSTM(hidden -> n_out)``,
    pooled ``pool x 1`` over time so that one output frame lines up with one output
    frame of the CNN (whose time axis is reduced by the same factor, also with
    ceil-mode windows ``[pool*j, pool*j + pool)``). The LSTMs are causal, so the
    outputs at valid frames are independent of trailing padding; no packing needed.

    Forward: ``x`` ``(B, T, n_in)``, ``lengths`` -> scores ``(B, ceil(T/pool), n_out)``
    (the LSTM output, in ``[-1, 1]``).
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, pool: int = 4):
        super().__init__()
        self.lstm1 = nn.LSTM(n_in, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden, n_out, batch_first=True)
        self.pool = int(pool)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm1(x)
        h, _ = self.lstm2(h)
        return masked_mean_pool(h, lengths, self.pool)


def _lstm_flops(module: nn.LSTM, T: int, B: int) -> int:
    flops = 0
    for layer in range(module.num_layers):
        n_in = module.input_size if layer == 0 else module.hidden_size
        h = module.hidden_size
        # 4 gates: W_ih x + W_hh h (2 MACs per weight) + biases + cell update.
        flops += T * B * (2 * 4 * h * (n_in + h) + 2 * 4 * h + 10 * h)
    return flops


@torch.no_grad()
def forward_flops(model: nn.Module, n_frames: int, n_features: int | None = None) -> dict:
    """Count the floating-point operations of one forward pass of ``model``.

    Runs the model once on a single all-zero utterance of ``n_frames`` frames (or
    segments for :class:`~devicepool.models.DFTCNN`) and counts multiply-adds of
    convolutions, linear layers and LSTMs (2 FLOPs per multiply-add, bias adds and
    LSTM gate non-linearities included roughly; ReLU, pooling and softmax are not
    counted, as is customary).

    Parameters
    ----------
    model : SACNN, DACNN or DFTCNN
    n_frames : int
        Number of input frames (300 frames = 3 s at a 10 ms shift).
    n_features : int, optional
        Input width; defaults to ``model.n_features``.

    Returns
    -------
    dict
        ``{"conv": int, "linear": int, "lstm": int, "total": int, "params": int}``.

    Examples
    --------
    >>> from devicepool.models import DACNN, forward_flops
    >>> forward_flops(DACNN(n_classes=10), 300)["total"] > 0
    True
    """
    n_features = model.n_features if n_features is None else int(n_features)
    counts = {"conv": 0, "linear": 0, "lstm": 0}
    hooks = []

    def conv_hook(mod, inp, out):
        k = math.prod(mod.kernel_size) * (mod.in_channels // mod.groups)
        counts["conv"] += out.numel() * (2 * k + (1 if mod.bias is not None else 0))

    def linear_hook(mod, inp, out):
        counts["linear"] += out.numel() * (2 * mod.in_features + (1 if mod.bias is not None else 0))

    def lstm_hook(mod, inp, out):
        x = inp[0]
        B, T = (x.shape[0], x.shape[1]) if mod.batch_first else (x.shape[1], x.shape[0])
        counts["lstm"] += _lstm_flops(mod, T, B)

    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.LSTM):
            hooks.append(m.register_forward_hook(lstm_hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        x = torch.zeros(1, int(n_frames), n_features, dtype=p.dtype, device=p.device)
        lengths = torch.tensor([int(n_frames)], device=p.device)
        model(x, lengths)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    counts["total"] = counts["conv"] + counts["linear"] + counts["lstm"]
    counts["params"] = sum(p.numel() for p in model.parameters())
    return counts


def prepare_input(x: torch.Tensor, lengths: torch.Tensor, n_features: int, norm: nn.Module):
    """Validate a padded batch, standardise it and re-zero the padding.

    Returns ``(x, lengths, mask)`` with ``x`` ``(B, T, F)`` float, ``lengths`` int64
    and ``mask`` ``(B, T)`` bool.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, n_frames, n_features); got shape {tuple(x.shape)}")
    if x.shape[2] != n_features:
        raise ValueError(
            f"x has {x.shape[2]} features per frame, but the model expects {n_features}"
        )
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (x.shape[0],):
        raise ValueError(
            f"lengths must have shape ({x.shape[0]},); got {tuple(lengths.shape)}"
        )
    if x.shape[0] and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(
            f"lengths must lie in [1, {x.shape[1]}] (the padded length); "
            f"got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    mask = lengths_to_mask(lengths, x.shape[1])
    x = norm(x, mask) * mask.unsqueeze(-1).to(x.dtype)
    return x, lengths, mask


class TimeAttentionCNN(nn.Module):
    """The part SA-CNN and DA-CNN share: standardised input, the masked CNN, LSTM
    attention-1 over time (one weight per CNN output frame) and the two-layer dense
    classifier on the pooled embedding. Subclasses define :meth:`embed`.

    Parameters
    ----------
    n_classes, n_bands : int
    channels : int
        Channels of each of the three convolutions (3x3).
    pools : sequence of 3 (pool_time, pool_freq)
    attention_hidden : int
        Units of the first attention LSTM.
    hidden : int
        Units of the dense layer before the output layer.
    dropout : float
    batch_norm : bool
        Masked batch normalisation after each convolution (:class:`MaskedBatchNorm2d`).
    utterance_norm : int
        Low-order cepstral coefficients of each utterance's mean log spectrum removed
        before the standardisation (:class:`InputNormalisation`'s
        ``utterance_coefficients``; 0: none).
    embedding_dim : int
        Size of the pooled vector the classifier reads (set by the subclass from its
        reading of the pooling equation).
    """

    def __init__(self, n_classes, n_bands, channels, pools, attention_hidden, hidden, dropout,
                 batch_norm=False, embedding_dim=None, utterance_norm=0):
        super().__init__()
        if int(n_classes) < 1 or int(n_bands) < 1:
            raise ValueError("n_classes and n_bands must be >= 1")
        self.n_classes = int(n_classes)
        self.n_bands = int(n_bands)
        self.n_features = self.n_bands
        self.batch_norm = bool(batch_norm)
        self.norm = InputNormalisation(self.n_bands, utterance_norm)
        self.utterance_norm = self.norm.utterance_coefficients
        self.cnn = MaskedConvStack(1, [(channels, pool) for pool in pools], batch_norm=batch_norm)
        self.time_reduction = self.cnn.time_reduction
        self.attention_time = AttentionLSTM(self.n_bands, attention_hidden, 1, pool=self.time_reduction)
        self.time_gain = nn.Parameter(torch.ones(()))
        self._add_attention(attention_hidden)  # before the classifier: same init order
        self.embedding_dim = int(channels if embedding_dim is None else embedding_dim)
        self.classifier = nn.Sequential(
            nn.Linear(self.embedding_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, self.n_classes),
        )

    def __setstate__(self, state):
        state.setdefault("batch_norm", False)  # pickled before batch norm existed
        state.setdefault("utterance_norm", 0)  # pickled before the utterance normalisation
        super().__setstate__(state)

    def _add_attention(self, attention_hidden):
        """Hook for subclasses with more attention networks (DA-CNN's band attention)."""

    def _time_attention(self, x, lengths):
        """``(x, lengths, fmap, out_len, tmask, w_time)``: the standardised input, the CNN
        map ``(B, C, T', F')`` with its lengths and valid-frame mask, and the time weights
        ``w_t = softmax_t(g_t * score_t)`` over the valid output frames ``(B, T')``."""
        x, lengths, _ = prepare_input(x, lengths, self.n_features, self.norm)
        fmap, out_len = self.cnn(x.unsqueeze(1), lengths)
        tmask = lengths_to_mask(out_len, fmap.shape[2])
        scores = self.attention_time(x, lengths)[..., 0]
        w_time = masked_softmax(self.time_gain * scores, tmask, dim=1)
        return x, lengths, fmap, out_len, tmask, w_time

    def _pool(self, x, lengths):
        """``(embedding (B, embedding_dim), BatchAttention)``: the subclass's pooling."""
        raise NotImplementedError(f"{type(self).__name__} must define _pool (abstract hook of "
                                  "TimeAttentionCNN; SACNN and DACNN do)")

    def fit_input_statistics(self, chunks) -> TimeAttentionCNN:
        """Set the input standardisation from raw training frames ``(n_i, n_bands)``, one
        block per utterance (:meth:`InputNormalisation.fit_chunks`)."""
        self.norm.fit_chunks(chunks)
        return self

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The attention-pooled embedding ``(B, embedding_dim)`` the classifier reads."""
        return self._pool(x, lengths)[0]

    def attention(self, x: torch.Tensor, lengths: torch.Tensor) -> BatchAttention:
        """Attention weights: ``time`` ``(B, ceil(T/4))`` (0 at padded frames) and, for
        DA-CNN, ``band`` ``(B, n_bands)``; also readable as ``att["time"]``."""
        return self._pool(x, lengths)[1]

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> ModuleOutputs:
        """Logits, embedding and attention from one forward pass."""
        emb, att = self._pool(x, lengths)
        return ModuleOutputs(self.classifier(emb), emb, att)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for a zero-padded batch ``x`` ``(B, T, n_bands)``."""
        return self.classifier(self.embed(x, lengths))
