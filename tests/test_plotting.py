"""Tests of devicepool.plotting (Fig. 2 panels, confusion matrices) with the Agg backend."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from devicepool.features import voicing_labels  # noqa: E402
from devicepool.plotting import (  # noqa: E402
    VOICING_CLASSES,
    align_frame_labels,
    band_centre_frequencies,
    plot_band_weights,
    plot_confusion_matrix,
    plot_time_weight_distribution,
    time_weight_histogram,
)


def save_png(ax, path):
    ax.figure.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000  # a blank figure is ~2 kB
    from matplotlib.image import imread

    img = imread(path)
    assert img[..., :3].std() > 0.05  # not one flat colour
    return img


# ----------------------------------------------------------------- Fig. 2a


def test_band_weights_lines_and_spread(tmp_path, rng):
    neutral = rng.dirichlet(np.ones(24), size=30)
    whisper = np.tile(np.linspace(0.02, 0.06, 24), (10, 1)) + 0.001 * rng.standard_normal((10, 24))
    ax = plot_band_weights(
        {"neutral": neutral, "whisper": whisper}, title="Fig. 2a", sample_rate=16000
    )
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), np.arange(24))
    np.testing.assert_allclose(lines[0].get_ydata(), neutral.mean(axis=0))
    np.testing.assert_allclose(lines[1].get_ydata(), whisper.mean(axis=0))
    assert len(ax.collections) == 2  # one shaded +-std band per 2-D entry
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["neutral (n=30)", "whisper (n=10)"]
    assert ax.get_title() == "Fig. 2a"
    assert ax.get_xlabel() == "mel band index"
    save_png(ax, tmp_path / "bands.png")


def test_band_weights_1d_labels_and_frequencies(rng):
    w = rng.random(24)
    freqs = band_centre_frequencies(24, 8000)
    ax = plot_band_weights({"a": w, "b": w[::-1]}, labels=["model A", "model B"],
                           band_frequencies=freqs)
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model A", "model B"]
    ax.figure.canvas.draw()
    top = ax.child_axes[0]
    texts = [t.get_text() for t in top.get_xticklabels()]
    assert texts[0] == f"{freqs[0] / 1000:.1f}" and len(texts) == 8


def test_band_centre_frequencies_match_filterbank_edges():
    from devicepool.features import mel_filterbank

    centres = band_centre_frequencies(24, 16000, f_min=20.0)
    weights = mel_filterbank(16000, 512, 24, 20.0, 8000.0)  # (n_mels, n_bins)
    peak_hz = np.argmax(weights, axis=1) * 16000 / 512
    assert np.all(np.abs(peak_hz - centres) <= 16000 / 512)


def test_band_weights_existing_axes_and_errors(rng):
    from matplotlib.figure import Figure

    ax0 = Figure().add_subplot()
    assert plot_band_weights({"x": rng.random(24)}, ax=ax0) is ax0
    with pytest.raises(ValueError, match="bands"):
        plot_band_weights({"a": rng.random(24), "b": rng.random(12)})
    with pytest.raises(TypeError, match="dict"):
        plot_band_weights(rng.random(24))
    with pytest.raises(ValueError, match="NaN"):
        plot_band_weights({"a": np.full(24, np.nan)})
    with pytest.raises(ValueError, match="labels has 1 names for 2"):
        plot_band_weights({"a": rng.random(24), "b": rng.random(24)}, labels=["x"])
    with pytest.raises(ValueError, match="band_frequencies"):
        plot_band_weights({"a": rng.random(24)}, band_frequencies=np.arange(10))


# ----------------------------------------------------------------- time weights


def test_histogram_quantisation_and_normalisation():
    weights = [np.array([0.0, 0.04, 0.2, 0.1, 0.16]), np.array([3.0, 1.5])]
    labels = [
        ["silence", "silence", "voiced", "unvoiced", "voiced"],
        ["unvoiced", "voiced"],
    ]
    counts = time_weight_histogram(weights, labels, normalize=False)
    assert list(counts) == list(VOICING_CLASSES)
    # utt 0 / 0.2: 0, 0.2, 1, 0.5, 0.8 ; utt 1 / 3: 1, 0.5
    assert counts["voiced"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1]
    assert counts["unvoiced"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert counts["silence"].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    frac = time_weight_histogram(weights, labels)
    for name in VOICING_CLASSES:
        assert frac[name].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(frac["voiced"][[5, 8, 10]], [1 / 3] * 3)


def test_histogram_empty_class_and_zero_weights():
    frac = time_weight_histogram([np.zeros(3)], [["voiced"] * 3], n_levels=5)
    assert frac["voiced"].tolist() == [1.0, 0, 0, 0, 0]
    assert frac["silence"].tolist() == [0.0] * 5


@pytest.mark.parametrize(
    "weights, labels, match",
    [
        ([np.ones(3)], [["voiced"] * 2], "3 time weights but 2 frame labels"),
        ([np.ones(2)], [["voiced", "breath"]], "unknown frame label"),
        ([np.array([1.0, -0.1])], [["voiced"] * 2], ">= 0"),
        ([np.ones(2), np.ones(2)], [["voiced"] * 2], "2 weight arrays but 1 label"),
        ([], [], "empty"),
    ],
)
def test_histogram_errors(weights, labels, match):
    with pytest.raises(ValueError, match=match):
        time_weight_histogram(weights, labels)


def test_align_frame_labels_majority_and_ties():
    labels = (["voiced"] * 3 + ["silence"]  # majority voiced
              + ["silence"] * 2 + ["unvoiced"] * 2  # tie -> unvoiced
              + ["voiced"] * 2 + ["silence"] * 2  # tie -> voiced
              + ["silence"] * 3 + ["unvoiced"]  # majority silence
              + ["silence", "unvoiced"])  # partial last block, tie -> unvoiced
    out = align_frame_labels(labels, 5, factor=4)
    assert out.tolist() == ["voiced", "unvoiced", "voiced", "silence", "unvoiced"]
    # floor-mode pooling: the partial block is dropped
    assert align_frame_labels(labels, 4).tolist() == out[:4].tolist()
    assert align_frame_labels(labels, 18, factor=1).tolist() == labels
    with pytest.raises(ValueError, match="n_out=6"):
        align_frame_labels(labels, 6)
    with pytest.raises(ValueError, match="unknown"):
        align_frame_labels(["voiced", "x"], 1)


def test_time_weight_distribution_real_labels(tmp_path, shared_data):
    """Fig. 2b-like panel on real voicing labels: weights favour voiced frames."""
    files = [shared_data / "fsdd" / "recordings" / f"{d}_theo_0.wav" for d in range(10)]
    files.append(shared_data / "whisper_sample" / "sample_whisper.wav")
    weights, labels = [], []
    rng = np.random.default_rng(1)
    for path in files:
        lab = voicing_labels(path, 16000)
        out = align_frame_labels(lab, lab.shape[0] // 4)
        score = np.select([out == "voiced", out == "unvoiced"], [2.0, 1.0], 0.0)
        w = np.exp(score + 0.3 * rng.standard_normal(out.shape[0]))
        weights.append(w / w.sum())
        labels.append(out)
    ax = plot_time_weight_distribution(weights, labels, title="Fig. 2b")
    assert len(ax.patches) == 3 * 11
    frac = time_weight_histogram(weights, labels)
    heights = np.array([p.get_height() for p in ax.patches]).reshape(3, 11)
    for c, name in enumerate(VOICING_CLASSES):
        np.testing.assert_allclose(heights[c], frac[name])
    assert [t.get_text() for t in ax.get_xticklabels()][::5] == ["0.0", "0.5", "1.0"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [s.split()[0] for s in legend] == list(VOICING_CLASSES)
    assert all(int(s.split("(")[1].split()[0]) > 0 for s in legend)  # every class present
    levels = np.linspace(0, 1, 11)
    # the synthetic attention favours voiced frames: their mean level is highest
    means = {n: (frac[n] * levels).sum() for n in VOICING_CLASSES}
    assert means["voiced"] > means["unvoiced"] > means["silence"]
    save_png(ax, tmp_path / "time_weights.png")


# ----------------------------------------------------------------- confusion matrix


def test_confusion_matrix_normalised(tmp_path):
    cm = np.array([[50, 3, 0], [4, 40, 6], [0, 0, 0]])
    names = ["Apple iPhone 5", "Samsung Galaxy S2", "Nokia N70"]
    ax = plot_confusion_matrix(cm, names, title="DA-CNN, Ex-1")
    data = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(data[0], 100 * cm[0] / 53)
    np.testing.assert_allclose(data[2], 0.0)  # empty row stays 0
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert ax.get_xticklabels()[0].get_rotation() == 45
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9
    assert texts[0] == "94.3%\n(50)" and texts[4] == "80.0%\n(40)"
    assert ax.get_title() == "DA-CNN, Ex-1"
    save_png(ax, tmp_path / "cm.png")


def test_confusion_matrix_counts_and_large():
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 20, size=(21, 21)) + np.diag(np.full(21, 100))
    ax = plot_confusion_matrix(cm, [f"device {i}" for i in range(21)], normalize=False)
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), cm)
    assert len(ax.texts) == 21 * 21
    assert ax.texts[0].get_text() == str(cm[0, 0])


@pytest.mark.parametrize(
    "cm, labels, match",
    [
        (np.ones((2, 3)), ["a", "b"], "square"),
        (np.array([[1, -1], [0, 1]]), ["a", "b"], "non-negative"),
        (np.eye(2), ["a"], "1 names for a 2x2"),
    ],
)
def test_confusion_matrix_errors(cm, labels, match):
    with pytest.raises(ValueError, match=match):
        plot_confusion_matrix(cm, labels)


def test_clear_error_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install devicepool\[plot\]"):
        plot_confusion_matrix(np.eye(2), ["a", "b"])


def test_band_weights_axis_says_what_the_shading_is():
    rng = np.random.default_rng(0)
    ax = plot_band_weights({"neutral": rng.random((5, 24))}, sample_rate=16000)
    assert "shaded: ±1 std over utterances" in ax.get_ylabel()
    ax = plot_band_weights({"neutral": rng.random(24)})
    assert ax.get_ylabel() == "mean band weight"


@pytest.mark.parametrize("n, figsize", [(8, (6.5, 6)), (8, (3, 3)), (12, (4, 4))])
def test_confusion_matrix_labels_fit_their_cells(n, figsize):
    """Every label (e.g. "100%" over its count) is narrower than its cell, also on small axes
    (the report's panels): 0.4 clipped "100.0%" to "00.0%" on an 8 x 8 matrix."""
    import matplotlib.pyplot as plt

    from devicepool.plotting import plot_confusion_matrix

    cm = np.diag(np.full(n, 18))
    cm[0, 1] = 1
    fig, ax = plt.subplots(figsize=figsize)
    plot_confusion_matrix(cm, [f"d{i}" for i in range(n)], ax=ax)
    renderer = fig.canvas.get_renderer()
    cell = ax.get_window_extent(renderer).width / n
    texts = [t for t in ax.texts if t.get_text()]
    assert len(texts) == n * n and "100%" in texts[n + 1].get_text()
    assert max(t.get_window_extent(renderer).width for t in texts) < cell
    plt.close(fig)
