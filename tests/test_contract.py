"""The module contract: a user-written network in a classifier, the contract's checks,
and attention, embedding and logits from one forward pass."""

import numpy as np
import pytest
import torch
from test_estimators import make_utterances
from torch import nn

from devicepool.estimators import DACNNClassifier, DFTCNNClassifier, SACNNClassifier
from devicepool.estimators._data import inference_batches
from devicepool.models import (
    DACNN,
    AttentionWeights,
    BatchAttention,
    ModuleOutputs,
    check_module,
    module_outputs,
)
from devicepool.models._blocks import lengths_to_mask

FAST = {"max_epochs": 3, "batch_size": 8, "random_state": 0}


class MeanStdNet(nn.Module):
    """A user's network: masked mean and std of the frames, then a small MLP."""

    def __init__(self, n_classes, n_features, hidden=16):
        super().__init__()
        self.n_classes, self.n_features = int(n_classes), int(n_features)
        self.head = nn.Sequential(nn.Linear(2 * self.n_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, self.n_classes))
        self.register_buffer("mu", torch.zeros(self.n_features))
        self.stats_calls = 0

    def fit_input_statistics(self, chunks):
        frames = torch.cat(list(chunks))
        self.mu.copy_(frames.mean(0))
        self.stats_calls += 1

    def embed(self, x, lengths):
        m = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        n = m.sum(1)
        mean = ((x - self.mu) * m).sum(1) / n
        var = (((x - self.mu - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
        return torch.cat([mean, var.sqrt()], dim=1)

    def forward(self, x, lengths):
        return self.head(self.embed(x, lengths))


def test_a_user_network_plugs_into_a_classifier(tmp_path):
    X, y = make_utterances(24, n_classes=3, width=24)
    clf = SACNNClassifier(module=MeanStdNet, module__hidden=8, **FAST).fit(X, y)
    assert isinstance(clf.module_, MeanStdNet) and clf.module_.head[0].out_features == 8
    assert clf.module_.stats_calls == 1  # input statistics set once per fit
    assert clf.module_.n_features == 24 and clf.module_.n_classes == 3
    proba = clf.predict_proba(X)
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.transform(X).shape == (24, 48)
    out = clf.predict_outputs(X)
    assert out.attention is None  # the network has none
    np.testing.assert_array_equal(clf.classes_[out.logits.argmax(1)], clf.predict(X))
    # padding never changes the prediction of the user's (masked) network
    alone = clf.predict_proba([X[0]])
    with_long = clf.predict_proba([X[0], np.concatenate([X[1]] * 5)])[:1]
    np.testing.assert_allclose(alone, with_long, atol=1e-5)
    # weights-only save/load round trip with the user's class given back
    path = tmp_path / "user.pt"
    clf.save(path)
    back = SACNNClassifier.load(path, module=MeanStdNet)
    np.testing.assert_allclose(back.predict_proba(X), proba, atol=1e-6)


class _NoEmbed(nn.Module):
    def __init__(self, n_classes, n_features):
        super().__init__()
        self.n_classes, self.n_features = n_classes, n_features
        self.lin = nn.Linear(n_features, n_classes)

    def forward(self, x, lengths):
        return self.lin(x.mean(1))


class _WrongWidth(MeanStdNet):
    def __init__(self, n_classes, n_features):
        super().__init__(n_classes, n_features)
        self.n_features = n_features + 1


class _NoWidthArg(nn.Module):
    def __init__(self, n_classes):
        super().__init__()


def test_the_contract_is_checked_when_the_module_is_built():
    X, y = make_utterances(12, n_classes=2, width=24)
    with pytest.raises(TypeError, match="lacks embed"):
        SACNNClassifier(module=_NoEmbed, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="n_features is 25 but the data need 24"):
        SACNNClassifier(module=_WrongWidth, **FAST).fit(X, y)
    with pytest.raises(TypeError, match="n_features"):
        SACNNClassifier(module=_NoWidthArg, **FAST).fit(X, y)
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        check_module(object())


def test_builtin_networks_take_the_contract_width_name():
    assert DACNN(n_classes=3, n_features=20).n_bands == 20
    assert DACNN(n_classes=3, n_bands=20, n_features=20).n_features == 20
    with pytest.raises(ValueError, match="disagree"):
        DACNN(n_classes=3, n_bands=24, n_features=20)
    check_module(DACNN(n_classes=3), n_classes=3, n_features=24)


def test_network_outputs_come_from_one_pass():
    net = DACNN(n_classes=4).eval()
    x = torch.randn(3, 41, 24)
    L = torch.tensor([41, 17, 5])
    calls = []
    net.cnn.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = module_outputs(net, x, L)
    assert len(calls) == 1 and isinstance(out, ModuleOutputs)
    assert isinstance(out.attention, BatchAttention) and out.attention.time_reduction == 4
    with torch.no_grad():
        torch.testing.assert_close(out.logits, net(x, L))
        torch.testing.assert_close(out.embedding, net.embed(x, L))
        att = net.attention(x, L)
    torch.testing.assert_close(out.attention.band, att["band"])
    assert set(att) == {"time", "band"} and att.time is att["time"]


@pytest.fixture(scope="module")
def fitted_da():
    X, y = make_utterances(24, n_classes=3, width=24)
    return DACNNClassifier(**FAST).fit(X, y), X


def test_classifier_outputs_in_one_pass_match_the_separate_methods(fitted_da):
    clf, X = fitted_da
    calls = []
    hook = clf.module_.cnn.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = clf.predict_outputs(X)
    finally:
        hook.remove()
    n_batches = len(list(inference_batches([len(a) for a in X], clf.batch_size)))
    assert len(calls) == n_batches  # one forward pass per batch, not one per quantity
    np.testing.assert_array_equal(clf.classes_[out.logits.argmax(1)], clf.predict(X))
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(out.logits), 1).numpy(),
                               clf.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(out.embedding, clf.transform(X), atol=1e-6)
    att = clf.attention_weights(X)
    np.testing.assert_allclose(out.attention.band, att.band, atol=1e-6)
    for a, b, u in zip(out.attention.time, att.time, X):
        assert a.shape == (int(np.ceil(len(u) / out.attention.time_reduction)),)
        np.testing.assert_allclose(a, b, atol=1e-6)
    # the one numpy type, from the classifier on (the protocol adds positions and voicing)
    assert isinstance(out.attention, AttentionWeights) and len(out.attention) == len(X)
    assert out.attention.time[0].dtype == np.float32 and out.attention.band.dtype == np.float32
    assert out.attention.utterance_index is None and out.attention.voicing is None


def test_dft_outputs_in_one_pass():
    rng = np.random.default_rng(0)
    X = [np.abs(rng.normal(size=(1 + i % 3, 257))).astype("float32") * (1 + i % 2)
         for i in range(12)]
    y = np.arange(12) % 2
    clf = DFTCNNClassifier(max_epochs=2, random_state=0).fit(X, y)
    out = clf.predict_outputs(X)
    assert out.attention is None
    np.testing.assert_allclose(out.embedding, clf.transform(X), atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[out.logits.argmax(1)], clf.predict(X))
