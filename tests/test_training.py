"""Tests of the training recipe: crops, the step budget, the one-cycle schedule,
speaker-disjoint validation (with metadata routing), masked batch norm, the readings
of eq. 2, and a behavioural test of the defaults on the embedded corpus."""

import os

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from test_estimators import make_utterances

from devicepool.estimators import (
    CropCollate,
    DACNNClassifier,
    DFTCNNClassifier,
    SACNNClassifier,
    UtteranceDataset,
)
from devicepool.estimators._data import _auto_split
from devicepool.models import DACNN, SACNN
from devicepool.models._blocks import MaskedBatchNorm2d, lengths_to_mask

# --------------------------------------------------------------------------- crops

def test_crops_are_windows_of_their_own_utterance():
    lengths = [5, 40, 41, 100, 7, 64]
    X = [np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 1000 * i for i, n in enumerate(lengths)]
    collate = CropCollate(16)
    torch.manual_seed(0)
    starts = set()
    for _ in range(20):
        batch, y = collate([(x, i) for i, x in enumerate(X)])
        x, L = batch["x"].numpy(), batch["lengths"].numpy()
        for b, (src, n) in enumerate(zip(X, lengths)):
            assert L[b] == min(n, 16)
            win = x[b, : L[b]]
            s0 = int(np.flatnonzero(src[:, 0] == win[0, 0])[0])  # values are unique per utterance
            np.testing.assert_array_equal(win, src[s0 : s0 + L[b]])  # contiguous, inside
            assert np.all(x[b, L[b]:] == 0)                          # the rest is padding
            if n > 16:
                starts.add((b, s0))
    assert y.tolist() == list(range(len(X)))
    assert len(starts) > 10  # windows are drawn afresh, not fixed


def test_crop_frames_reach_the_training_batches_only():
    X, y = make_utterances(24, min_len=30, max_len=60)
    seen = {"train": set(), "valid": set()}

    from skorch.callbacks import Callback

    class Spy(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            seen["train" if training else "valid"].add(int(batch[0]["x"].shape[1]))

    DACNNClassifier(max_epochs=2, crop_frames=20, valid_fraction=0.2, random_state=0,
                    callbacks=[Spy()]).fit(X, y)
    assert seen["train"] == {20}
    assert max(seen["valid"]) > 20  # validation sees whole utterances


# ---------------------------------------------------------------- step budget, schedule

@pytest.mark.parametrize("n, max_steps, max_epochs, expected", [
    (300, 600, 200, (60, 10)),   # 10 batches of 32 an epoch -> 60 epochs
    (20, 600, 200, (200, 1)),    # one batch an epoch: capped by max_epochs
    (3000, 600, 200, (7, 94)),   # a large corpus: the budget, rounded up to an epoch
    (300, None, 13, (13, 10)),   # no budget: max_epochs
])
def test_step_budget_sets_the_number_of_epochs(n, max_steps, max_epochs, expected):
    clf = SACNNClassifier(max_steps=max_steps, max_epochs=max_epochs)
    plan = clf._plan(list(range(n)), None)
    assert (plan["epochs"], plan["steps_per_epoch"]) == expected
    assert plan["steps"] == expected[0] * expected[1]


def test_fit_follows_the_plan_and_the_one_cycle_schedule():
    X, y = make_utterances(40)
    lrs = []

    from skorch.callbacks import Callback

    class LR(Callback):
        def on_batch_begin(self, net, training=None, **kwargs):
            if training:
                lrs.append(net.optimizer_.param_groups[0]["lr"])

    clf = SACNNClassifier(max_steps=12, batch_size=8, lr=0.01, train_split=None,
                          random_state=0, callbacks=[LR()]).fit(X, y)
    assert clf.train_plan_["steps"] == 15 and len(clf.history) == 3  # 5 batches x 3 epochs
    assert len(lrs) == 15
    peak = int(np.argmax(lrs))
    assert 0 < peak < 14 and lrs[peak] == pytest.approx(0.01, rel=0.02)  # peak near 30 %
    assert lrs[0] == pytest.approx(0.01 / 25, rel=1e-6)
    assert lrs[-1] < 0.01 / 50
    lrs.clear()
    SACNNClassifier(max_steps=12, batch_size=8, lr=0.01, lr_schedule=None, train_split=None,
                    random_state=0, callbacks=[LR()]).fit(X, y)
    assert set(lrs) == {0.01}


# --------------------------------------------------------- speaker-disjoint validation

def test_auto_split_holds_out_whole_speakers():
    X, y = make_utterances(60)
    speakers = np.repeat(np.array([f"s{i}" for i in range(6)]), 10)
    ds = UtteranceDataset(X, np.arange(60) % 3, speakers=speakers)
    train, valid = _auto_split(ds, 0.2, seed=0)
    tr_spk = set(speakers[train.indices])
    va_spk = set(speakers[valid.indices])
    assert len(va_spk) == 1 and not tr_spk & va_spk  # round(0.2 * 6) = 1 whole speaker
    assert len(train) + len(valid) == 60
    # one speaker only: no validation, said in a warning
    ds1 = UtteranceDataset(X, np.arange(60) % 3, speakers=np.zeros(60))
    with pytest.warns(UserWarning, match="speaker-disjoint"):
        assert _auto_split(ds1, 0.2, seed=0) == (ds1, None)


def test_fit_with_groups_validates_on_unseen_speakers():
    X, y = make_utterances(48)
    groups = np.repeat(np.arange(8), 6)
    clf = DACNNClassifier(max_epochs=2, valid_fraction=0.2, random_state=0).fit(X, y, groups=groups)
    plan = clf.train_plan_
    assert plan["valid_speakers"] is not None and len(plan["valid_speakers"]) == 2
    assert plan["n_valid"] == 12 and plan["n_train"] == 36
    assert "valid_loss" in clf.history[-1]
    no_groups = DACNNClassifier(max_epochs=2, valid_fraction=0.2, random_state=0).fit(X, y)
    assert no_groups.train_plan_["valid_speakers"] is None
    with pytest.raises(ValueError, match="one speaker per utterance"):
        DACNNClassifier(max_epochs=1).fit(X, y, groups=groups[:-1])


def test_dft_cnn_validation_keeps_speakers_and_utterances_together():
    from test_estimators import make_dft

    X, y = make_dft(24)
    groups = np.repeat(np.arange(6), 4)
    clf = DFTCNNClassifier(max_epochs=1, valid_fraction=0.2, random_state=0).fit(X, y, groups=groups)
    assert len(clf.train_plan_["valid_speakers"]) == 1


def _identity(X):
    return X


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def test_groups_reach_the_classifier_in_cross_validate_and_grid_search(routing):
    X, y = make_utterances(48)
    groups = np.repeat(np.arange(8), 6)
    pipe = Pipeline([
        ("features", FunctionTransformer(_identity)),
        ("clf", DACNNClassifier(max_epochs=1, valid_fraction=0.2,
                                random_state=0).set_fit_request(groups=True)),
    ])
    # with routing on, sklearn takes the groups once, in params, for the folds and the fit
    res = cross_validate(pipe, X, y, params={"groups": groups}, cv=GroupKFold(2),
                         return_estimator=True)
    for est, (_, test_idx) in zip(res["estimator"], GroupKFold(2).split(X, y, groups)):
        held = set(est[-1].train_plan_["valid_speakers"])
        assert held and not held & set(map(str, groups[test_idx]))  # from the training part
    gs = GridSearchCV(pipe, {"clf__lr": [1e-3, 3e-3]}, cv=GroupKFold(2)).fit(X, y, groups=groups)
    assert gs.best_estimator_[-1].train_plan_["valid_speakers"] is not None


def test_the_networks_request_groups_by_default(routing):
    X, y = make_utterances(48)
    groups = np.repeat(np.arange(8), 6)
    pipe = Pipeline([("features", FunctionTransformer(_identity)),
                     ("clf", DACNNClassifier(max_epochs=1, valid_fraction=0.2, random_state=0))])  # no set_fit_request
    pipe.fit(X, y, groups=groups)
    assert set(pipe[-1].train_plan_["valid_speakers"]) < set(map(str, groups))


def test_groups_as_a_step_parameter_without_routing():
    X, y = make_utterances(48)
    groups = np.repeat(np.arange(8), 6)
    pipe = Pipeline([("features", FunctionTransformer(_identity)),
                     ("clf", DACNNClassifier(max_epochs=1, valid_fraction=0.2, random_state=0))])
    res = cross_validate(pipe, X, y, groups=groups, params={"clf__groups": groups},
                         cv=GroupKFold(2), return_estimator=True)
    assert all(e[-1].train_plan_["valid_speakers"] for e in res["estimator"])


# ------------------------------------------------------------------- masked batch norm

def test_masked_batch_norm_ignores_padding_in_training():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 10, 6)
    lengths = torch.tensor([10, 4, 7])
    mask = lengths_to_mask(lengths, 10)
    bn = MaskedBatchNorm2d(4).train()
    noisy = x.clone()
    noisy[~mask[:, None, :, None].expand_as(x)] = 1e3  # garbage in the padding
    y1 = bn(x * mask[:, None, :, None], mask)
    bn2 = MaskedBatchNorm2d(4).train()
    y2 = bn2(noisy, mask)
    valid = mask[:, None, :, None].expand_as(x)
    torch.testing.assert_close(y1[valid], y2[valid])
    torch.testing.assert_close(bn.running_mean, bn2.running_mean)
    # statistics of the valid frames alone
    vals = x.permute(1, 0, 2, 3)[:, mask].reshape(4, -1)
    torch.testing.assert_close(y1.permute(1, 0, 2, 3)[:, mask].reshape(4, -1).mean(1),
                               torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(bn.running_mean, 0.1 * vals.mean(1))


@pytest.mark.parametrize("Net", [SACNN, DACNN])
def test_batch_norm_models_keep_padding_invariance_at_prediction(Net):
    torch.manual_seed(0)
    net = Net(n_classes=3, batch_norm=True)
    net.train()
    for _ in range(3):  # move the running statistics away from their initial values
        net(torch.randn(4, 50, 24), torch.tensor([50, 30, 12, 5]))
    net.eval()
    x = torch.randn(2, 60, 24)
    x[1, 13:] = 0
    with torch.no_grad():
        batched = net(x, torch.tensor([60, 13]))[1]
        alone = net(x[1:, :13], torch.tensor([13]))[0]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


# ------------------------------------------------------------------- readings of eq. 2

def test_band_preserving_reading_keeps_what_the_band_sum_adds_up():
    torch.manual_seed(0)
    keep = DACNN(n_classes=3, band_pooling="preserve").eval()
    summed = DACNN(n_classes=3, band_pooling="sum").eval()
    state = {k: v for k, v in keep.state_dict().items() if not k.startswith("classifier")}
    summed.load_state_dict(state, strict=False)
    x, L = torch.randn(2, 40, 24), torch.tensor([40, 17])
    with torch.no_grad():
        e_keep, e_sum = keep.embed(x, L), summed.embed(x, L)
    assert e_keep.shape == (2, 40 * 24) and e_sum.shape == (2, 40)
    # K' of eq. 2 = sum over bands of the preserved vectors (which carry the factor 24)
    torch.testing.assert_close(e_keep.reshape(2, 40, 24).sum(-1) / 24, e_sum)
    sa_keep, sa_mean = SACNN(n_classes=3), SACNN(n_classes=3, band_pooling="mean")
    assert sa_keep.embedding_dim == 240 and sa_mean.embedding_dim == 20
    with pytest.raises(ValueError, match="band_pooling"):
        DACNN(n_classes=3, band_pooling="mean")


# ------------------------------------------------------------------ parameter checks

@pytest.mark.parametrize("param, value", [
    ("crop_frames", 0), ("crop_frames", 2.5), ("max_steps", 0), ("max_epochs", 0),
    ("patience", -1), ("batch_size", 0), ("lr_schedule", "cosine"), ("lr", -1.0),
    ("valid_fraction", 1.5), ("valid_fraction", -0.1), ("max_batch_frames", 0),
    ("train_split", "holdout"), ("progress", "yes"), ("random_state", -3), ("max_epochs", 2.0),
])
def test_bad_training_parameters_are_named(param, value):
    X, y = make_utterances(12)
    with pytest.raises(ValueError, match=f"'{param}' parameter of SACNNClassifier"):
        SACNNClassifier(**{param: value}).fit(X, y)


# ---------------------------------------------------------------- behaviour (defaults)

@pytest.fixture(scope="module")
def small_corpus_features():
    from devicepool import FilterBank, make_device_corpus

    c = make_device_corpus(n_devices=4, n_speakers=4, n_utterances=6, modes=("neutral",),
                           random_state=3)
    return FilterBank().fit_transform(c.data), np.asarray(c.target), np.asarray(c.groups)


def test_defaults_separate_devices_of_an_unseen_speaker(small_corpus_features):
    """Library defaults (only the step budget shortened for the fast suite) on 3 training
    speakers; tested on the 4th speaker. Chance is 25 %; measured: 22 of 24."""
    F, y, g = small_corpus_features
    test = g == g[-1]
    clf = DACNNClassifier(max_steps=150, random_state=0)
    clf.fit(list(F[~test]), y[~test], groups=g[~test])
    acc = clf.score(list(F[test]), y[test])
    assert acc >= 0.6, acc


@pytest.mark.slow
@pytest.mark.parametrize("Cls", [DACNNClassifier, SACNNClassifier])
def test_defaults_on_the_default_corpus_fold(Cls):
    """Full library defaults, default corpus, neutral, one speaker fold of the protocol."""
    from devicepool import FilterBank, make_device_corpus
    from devicepool.protocol import make_folds

    c = make_device_corpus(random_state=0, modes=("neutral",))
    F = FilterBank().fit_transform(c.data)
    y, g = np.asarray(c.target), np.asarray(c.groups)
    held = make_folds(g, 3)[0]
    clf = Cls(random_state=0).fit(list(F[~held]), y[~held], groups=g[~held])
    assert clf.score(list(F[held]), y[held]) >= 0.9  # chance 1/6; measured in docs/models.md


def test_a_users_interrupt_aborts_fit_and_early_stopping_ends_it_normally():
    from skorch.callbacks import Callback, EarlyStopping

    X, y = make_utterances(24)

    class CtrlC(Callback):  # what a SIGINT during an epoch raises
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    clf = SACNNClassifier(max_epochs=5, random_state=0, callbacks=[CtrlC()])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)  # skorch alone would swallow it and return a half-trained model
    # early stopping, ours or skorch's, still ends training normally
    ours = SACNNClassifier(max_epochs=40, patience=1, lr=0.05, random_state=0).fit(X, y)
    assert len(ours.history) < 40
    theirs = SACNNClassifier(max_epochs=40, lr=0.05, random_state=0,
                             callbacks=[EarlyStopping(patience=1)]).fit(X, y)
    assert len(theirs.history) < 40


def test_masked_batch_norm_without_padding_is_plain_batch_norm():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 5)
    full = torch.ones(4, 8, dtype=torch.bool)
    masked, plain = MaskedBatchNorm2d(3).train(), torch.nn.BatchNorm2d(3).train()
    partial = full.clone()
    partial[0, -1] = False  # forces the masked path on the same valid frames but one
    y_fast = masked(x, full)
    torch.testing.assert_close(y_fast, plain(x))
    torch.testing.assert_close(masked.running_var, plain.running_var)
    both = MaskedBatchNorm2d(3).train()  # the masked arithmetic agrees with the fused kernel
    torch.testing.assert_close(both._masked_forward(x, full), y_fast, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.running_var, plain.running_var)
    slow = MaskedBatchNorm2d(3).train()
    y_slow = slow(x, partial)
    assert not torch.allclose(y_slow, y_fast)  # the padded frame is left out of the moments


# ---------------------------------------------------------------- memory budget

def test_bucket_iterator_bounds_the_padded_frames_of_a_batch():
    from devicepool.estimators import BucketIterator

    lengths = [10] * 8 + [1000] + [30] * 5
    ds = UtteranceDataset([np.zeros((n, 3), np.float32) for n in lengths], np.zeros(len(lengths)))
    for shuffle in (False, True):
        it = BucketIterator(ds, batch_size=4, shuffle=shuffle, max_frames=100)
        seen = []
        for batch, _ in it:
            B, T = batch["x"].shape[:2]
            assert B * T <= 100 or B == 1  # an item longer than the budget goes alone
            seen += batch["lengths"].tolist()
        assert sorted(seen) == sorted(lengths)  # nothing lost, nothing repeated
    # with a crop applied by the collate function, the cap counts, not the raw length
    it = BucketIterator(ds, batch_size=4, max_frames=100, length_cap=25,
                        collate_fn=CropCollate(25))
    assert all(b["x"].shape[0] * b["x"].shape[1] <= 100 for b, _ in it)


def test_training_batches_stay_within_the_frame_budget_whatever_the_lengths():
    from skorch.callbacks import Callback

    X, y = make_utterances(16, n_classes=2)
    X[3] = np.concatenate([X[3]] * 40)  # one utterance 40x longer than the others
    shapes = []

    class Shapes(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            shapes.append((training, tuple(batch[0]["x"].shape[:2])))

    clf = DACNNClassifier(crop_frames=None, max_batch_frames=200, batch_size=8, max_epochs=2,
                          train_split=None, random_state=0, callbacks=[Shapes()])
    with pytest.warns(UserWarning, match=r"1 training item\(s\) are longer than max_batch_frames=200"):
        clf.fit(X, y)
    assert shapes and all(B * T <= 200 for training, (B, T) in shapes if training)
    assert max(T for _, (_, T) in shapes) == 200  # the long one: random windows of 200
    # prediction uses the same budget: the long utterance goes alone, whole
    out = clf.predict_outputs(X)
    assert len(out.attention.time[3]) == int(np.ceil(len(X[3]) / 4))


def test_default_recipe_is_untouched_by_the_budget():
    # crops of 100 frames x 32 items = 3200 padded frames: far below the default budget,
    # so the budget never cuts a batch or changes a random draw
    X, y = make_utterances(40)
    a = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y)
    b = SACNNClassifier(max_epochs=2, random_state=0, max_batch_frames=None).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_a_real_sigint_aborts_fit():
    """A real Ctrl-C (SIGINT) during training raises KeyboardInterrupt out of ``fit``:
    the fit is never reported as finished (skorch alone would end it as "trained")."""
    import signal
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent("""
        import sys
        import numpy as np
        from skorch.callbacks import Callback
        from devicepool.estimators import SACNNClassifier

        class Started(Callback):
            def on_epoch_end(self, net, **kwargs):
                if len(net.history) == 1:
                    print("STARTED", flush=True)

        rng = np.random.default_rng(0)
        X = [rng.normal(size=(40, 24)).astype("float32") for _ in range(40)]
        y = np.arange(40) % 2
        clf = SACNNClassifier(max_epochs=100000, max_steps=None, train_split=None,
                              callbacks=[Started()], random_state=0)
        try:
            clf.fit(X, y)
        except KeyboardInterrupt:
            print("ABORTED", len(clf.history), flush=True)
            sys.exit(0)
        print("FINISHED", len(clf.history), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "STARTED"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.startswith("ABORTED"), out


# ---------------------------------------------------------------- weights (issue 13)

def test_a_weight_k_counts_as_k_copies_in_the_loss():
    X, y = make_utterances(12, n_classes=3)
    clf = SACNNClassifier(max_epochs=1, random_state=0).fit(X, y)
    ds_w = UtteranceDataset(X[:3], clf.classes_.searchsorted(y[:3]), weights=[1.0, 2.0, 1.0])
    ds_dup = UtteranceDataset([X[0], X[1], X[1], X[2]], clf.classes_.searchsorted(y[[0, 1, 1, 2]]))
    from devicepool.estimators import collate_utterances

    clf.module_.eval()
    with torch.no_grad():
        (bw, yw), (bd, yd) = (collate_utterances([d[i] for i in range(len(d))]) for d in (ds_w, ds_dup))
        loss_w = clf.get_loss(clf.infer(bw), yw, X=bw)
        loss_dup = clf.get_loss(clf.infer(bd), yd, X=bd)
        plain = clf.get_loss(clf.infer({k: bw[k] for k in ("x", "lengths")}), yw)
    torch.testing.assert_close(loss_w, loss_dup)  # the weighted reference: copies
    assert not torch.allclose(loss_w, plain)


def test_class_weight_balanced_is_sample_weight_of_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    X, y = make_utterances(30, n_classes=3)
    y = y.copy()
    y[:8] = y[1]  # imbalanced
    classes = np.unique(y)
    cw = dict(zip(classes, compute_class_weight("balanced", classes=classes, y=y)))
    a = SACNNClassifier(max_epochs=2, random_state=0, class_weight="balanced").fit(X, y)
    b = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y, sample_weight=[cw[v] for v in y])
    c = SACNNClassifier(max_epochs=2, random_state=0, class_weight=cw).fit(X, y)
    d = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(a.predict_proba(X), c.predict_proba(X), atol=1e-6)
    assert not np.allclose(a.predict_proba(X), d.predict_proba(X))
    # all weights times a constant: the same fit (the loss is a weighted mean)
    e = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y, sample_weight=[3 * cw[v] for v in y])
    np.testing.assert_allclose(b.predict_proba(X), e.predict_proba(X), atol=1e-5)


def test_dft_segments_carry_their_utterances_weight():
    rng = np.random.default_rng(0)
    X = [np.abs(rng.normal(size=(2 + i % 2, 257))).astype("float32") * (1 + i % 2) for i in range(12)]
    y = np.arange(12) % 2
    w = np.linspace(0.5, 2, 12)
    clf = DFTCNNClassifier(max_epochs=1, random_state=0)
    items, y_items, utt = clf._training_items(X, y)
    clf.fit(X, y, sample_weight=w)
    assert len(items) == sum(len(a) for a in X) and np.array_equal(np.repeat(np.arange(12), [len(a) for a in X]), utt)


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_weight": [1.0] * 5}, r"sample_weight must be 1-D with one weight per utterance \(12\)"),
    ({"sample_weight": [1.0] * 11 + [-1.0]}, r"finite and >= 0; utterance 11 has -1.0"),
    ({"sample_weight": [1.0] * 11 + [np.nan]}, r"utterance 11 has nan"),
    ({"sample_weight": [0.0] * 12}, "zero for every utterance"),
])
def test_bad_sample_weights_are_refused(kwargs, match):
    X, y = make_utterances(12)
    with pytest.raises(ValueError, match=match):
        SACNNClassifier(max_epochs=1).fit(X, y, **kwargs)


def test_bad_class_weights_are_refused():
    X, y = make_utterances(12)
    with pytest.raises(ValueError, match=r"class_weight names classes not in y: \['drone'\]"):
        SACNNClassifier(max_epochs=1, class_weight={"drone": 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="'class_weight' parameter of SACNNClassifier"):
        SACNNClassifier(max_epochs=1, class_weight="inverse").fit(X, y)


def test_sample_weight_reaches_the_classifier_in_a_pipeline():
    X, y = make_utterances(24, n_classes=2)
    w = np.where(np.arange(24) < 12, 1.0, 2.0)
    direct = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y, sample_weight=w)
    with sklearn.config_context(enable_metadata_routing=True):  # routed by the Pipeline
        clf = SACNNClassifier(max_epochs=2, random_state=0).set_fit_request(sample_weight=True)
        routed = Pipeline([("id", FunctionTransformer(lambda X: X)), ("clf", clf)])
        routed.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(direct.predict_proba(X), routed.predict_proba(X), atol=1e-6)
    plain = Pipeline([("id", FunctionTransformer(lambda X: X)),   # without routing
                      ("clf", SACNNClassifier(max_epochs=2, random_state=0))]).fit(X, y, clf__sample_weight=w)
    np.testing.assert_allclose(direct.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    unweighted = SACNNClassifier(max_epochs=2, random_state=0).fit(X, y)
    assert not np.allclose(direct.predict_proba(X), unweighted.predict_proba(X))


def test_the_training_plan_is_a_frozen_dataclass_that_still_reads_like_its_dict():
    import dataclasses
    import json

    from devicepool._io import to_jsonable
    from devicepool.estimators import TrainingPlan

    plan = SACNNClassifier(max_steps=600, max_epochs=200)._plan(list(range(300)), None)
    assert isinstance(plan, TrainingPlan) and (plan.epochs, plan.steps_per_epoch, plan.steps) == (60, 10, 600)
    old = {"epochs": 60, "steps_per_epoch": 10, "steps": 600, "n_train": 300, "n_valid": 0,
           "valid_speakers": None}  # the dict the plan was: records keep its JSON
    assert plan.as_dict() == dict(plan) == old and plan["n_valid"] == 0 and list(plan.keys()) == list(old)
    assert json.dumps(to_jsonable(plan)) == json.dumps(to_jsonable(dict(plan))) == json.dumps(old)
    with pytest.raises(KeyError):
        plan["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.epochs = 1
