"""Tests of the plain torch modules (Table 1 shapes, masking, attention, FLOPs)."""

import math

import pytest
import torch

from devicepool.models import DACNN, DFTCNN, SACNN, forward_flops
from devicepool.models._blocks import masked_mean_pool, masked_softmax


def _batch(lengths, F=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.randn(len(lengths), T, F, generator=g)
    L = torch.tensor(lengths)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    return x, L


def test_table1_sacnn_shapes():
    net = SACNN(n_classes=7)
    assert [c.out_channels for c in net.cnn.convs] == [20, 20, 20]
    assert [c.kernel_size for c in net.cnn.convs] == [(3, 3)] * 3
    assert net.cnn.pools == [(2, 1), (1, 2), (2, 1)]
    assert net.time_reduction == 4
    assert net.attention_time.lstm1.hidden_size == 24
    assert net.attention_time.lstm2.hidden_size == 1
    assert [m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear)] == [60, 7]
    x, L = _batch([300, 101])
    fmap, out_len = net.cnn(x.unsqueeze(1), L)
    assert fmap.shape == (2, 20, 75, 12)
    assert out_len.tolist() == [75, math.ceil(101 / 4)]
    assert net(x, L).shape == (2, 7)
    assert net.embed(x, L).shape == (2, 20 * 12)  # band-preserving reading (default)
    assert SACNN(n_classes=7, band_pooling="mean").embed(x, L).shape == (2, 20)  # the paper


def test_table1_dacnn_shapes_keep_24_bands():
    net = DACNN(n_classes=5)
    assert [c.out_channels for c in net.cnn.convs] == [40, 40, 40]
    assert net.cnn.pools == [(2, 1), (1, 1), (2, 1)]
    assert net.attention_band.lstm1.hidden_size == 24
    assert net.attention_band.lstm2.hidden_size == 24
    assert net.attention_time.lstm2.hidden_size == 1
    assert [m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear)] == [120, 5]
    x, L = _batch([300, 37])
    fmap, out_len = net.cnn(x.unsqueeze(1), L)
    assert fmap.shape == (2, 40, 75, 24)
    att = net.attention(x, L)
    assert att["time"].shape == (2, 75)
    assert att["band"].shape == (2, 24)
    assert net.embed(x, L).shape == (2, 40 * 24)  # band-preserving reading (default)
    assert DACNN(n_classes=5, band_pooling="sum").embed(x, L).shape == (2, 40)  # eq. 2 as printed


@pytest.mark.parametrize("Net", [SACNN, DACNN])
def test_attention_normalised_over_valid_frames_only(Net):
    net = Net(n_classes=3).eval()
    x, L = _batch([300, 9, 1])
    att = net.attention(x, L)
    w = att["time"]
    n_valid = [75, 3, 1]
    for b, n in enumerate(n_valid):
        assert torch.allclose(w[b, :n].sum(), torch.tensor(1.0), atol=1e-6)
        assert torch.all(w[b, n:] == 0)
        assert torch.all(w[b, :n] > 0)
    if "band" in att:
        assert torch.allclose(att["band"].sum(1), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize("Net", [SACNN, DACNN])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 33])
def test_padding_never_changes_output(Net, n):
    torch.manual_seed(0)
    net = Net(n_classes=4).eval()
    x, L = _batch([n, 5 * n + 3, 2])
    with torch.no_grad():
        batched = net(x, L)[0]
        alone = net(x[:1, :n], L[:1])[0]
        emb_b, emb_a = net.embed(x, L)[0], net.embed(x[:1, :n], L[:1])[0]
        # garbage in the padded region must not matter either (it is re-zeroed)
        x2 = x.clone()
        x2[0, n:] = 1e3
        garbage = net(x2, L)[0]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(emb_b, emb_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(garbage, alone, atol=1e-5, rtol=0)


def test_dftcnn_segment_mean_rule_and_masking():
    torch.manual_seed(0)
    net = DFTCNN(n_classes=3).eval()
    x = torch.rand(2, 6, 4001)
    L = torch.tensor([2, 6])
    x[0, 2:] = 0
    with torch.no_grad():
        out = net(x, L)
        seg = torch.log_softmax(net.segment_logits(x[0, :2]), dim=1).mean(0)
        alone = net(x[:1, :2], L[:1])
    torch.testing.assert_close(out[0], seg, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0], alone[0], atol=1e-5, rtol=0)
    assert net.embed(x, L).shape == (2, 128)


def test_masked_helpers():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    w = masked_softmax(s, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(w, torch.softmax(torch.tensor([[1.0, 2.0, 0.0]])[:, :2], 1).new_tensor(
        [[math.exp(1) / (math.exp(1) + math.exp(2)), math.exp(2) / (math.exp(1) + math.exp(2)), 0.0]]))
    h = torch.arange(6.0).reshape(1, 6, 1)
    p = masked_mean_pool(h, torch.tensor([5]), 4)
    assert p[0, :, 0].tolist() == [1.5, 4.0]  # (0+1+2+3)/4, 4/1 (frame 5 is padding)


def test_bad_inputs_to_modules():
    net = SACNN(n_classes=2)
    with pytest.raises(ValueError, match="features per frame"):
        net(torch.zeros(1, 10, 20), torch.tensor([10]))
    with pytest.raises(ValueError, match="lengths"):
        net(torch.zeros(1, 10, 24), torch.tensor([0]))
    with pytest.raises(ValueError, match="lengths"):
        net(torch.zeros(1, 10, 24), torch.tensor([11]))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_forward_flops_counts_conv_by_hand(batch_norm):
    net = DACNN(n_classes=10, batch_norm=batch_norm)
    f = forward_flops(net, 300)
    # conv1 1->40 on 300x24, conv2/3 40->40 on 150x24 (2 FLOPs per MAC, + bias without
    # batch norm; with it the convolutions have no bias)
    bias = 0 if batch_norm else 1
    conv = 300 * 24 * 40 * (2 * 9 + bias) + 2 * 150 * 24 * 40 * (2 * 360 + bias)
    assert f["conv"] == conv
    assert f["lstm"] > 0 and f["linear"] > 0
    assert f["params"] == sum(p.numel() for p in net.parameters())
    assert forward_flops(SACNN(10), 300)["total"] < f["total"]
    assert forward_flops(DFTCNN(10), 6)["total"] > 0


@pytest.mark.parametrize("Net", [SACNN, DACNN])
def test_utterance_norm_removes_level_and_tilt_but_not_band_detail(Net):
    # utterance_norm=2 (the default): a recording level or a spectral tilt added to every
    # frame of an utterance changes nothing; a notch in one band does; 0 sees all three
    from devicepool.models._blocks import _dct_rows

    torch.manual_seed(0)
    x, L = _batch([40, 25])
    mask = (torch.arange(40)[None, :] < L[:, None]).unsqueeze(-1).float()
    tilt = _dct_rows(24, 2)[1] * 6.0                   # the slowest cosine across the bands
    notch = torch.zeros(24)
    notch[17] = -3.0
    for k, same in ((2, (True, True, False)), (1, (True, False, False)), (0, (False, False, False))):
        net = Net(n_classes=3, utterance_norm=k).eval()
        net.fit_input_statistics([torch.randn(30, 24) for _ in range(4)])
        with torch.no_grad():
            ref = net(x, L)
            for shift, unchanged in zip((torch.full((24,), 4.0), tilt, notch), same):
                out = net(x + shift * mask, L)
                assert torch.allclose(out, ref, atol=1e-5) == unchanged, (k, shift)


def test_utterance_norm_statistics_are_those_of_the_normalised_frames():
    from devicepool.models._blocks import InputNormalisation

    g = torch.Generator().manual_seed(1)
    utts = [torch.randn(int(n), 24, generator=g, dtype=torch.float64) * 2 + torch.randn(24, generator=g)
            + 5 * torch.rand(1, generator=g) for n in (5, 17, 40, 3, 22)]
    norm = InputNormalisation(24, 2).fit_chunks(iter(utts))
    B = norm.basis.double()
    frames = torch.cat([u - ((u.mean(0) - norm.mean.double()) @ B.T) @ B for u in utts])
    torch.testing.assert_close(norm.mean.double(), frames.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.scale.double(), frames.std(0, unbiased=False), atol=1e-5, rtol=1e-5)
    # and the forward pass standardises the training frames with them
    out = torch.cat([norm(u.float()[None])[0] for u in utts])
    torch.testing.assert_close(out.mean(0), torch.zeros(24), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(24), atol=1e-4, rtol=0)


def test_utterance_norm_bad_values_and_old_pickles():
    import pickle

    with pytest.raises(ValueError, match=r"utterance_coefficients must be >= 0; got -1"):
        SACNN(n_classes=3, utterance_norm=-1)
    # something of every utterance is left: at most n_features - 1 coefficients go
    assert DACNN(n_classes=3, utterance_norm=30).utterance_norm == 23
    assert SACNN(n_classes=3, n_bands=2).utterance_norm == 1
    assert DACNN(n_classes=3, n_bands=1).utterance_norm == 0
    # a module pickled before the parameter existed normalised no utterance
    net = DACNN(n_classes=3)
    for m in (net, net.norm):
        del m.__dict__["utterance_norm" if m is net else "utterance_coefficients"]
    del net.norm._buffers["basis"]
    old = pickle.loads(pickle.dumps(net))
    assert old.utterance_norm == 0 and old.norm.utterance_coefficients == 0
    x, L = _batch([12])
    with torch.no_grad():
        old.eval()(x, L)
