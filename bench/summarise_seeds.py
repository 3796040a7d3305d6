"""Mean ± std over seeds of the accuracy benchmark's runs (#21 item 2), and the paper's claims.

Reads, for each model, the runs at its 0.6 defaults:

* SA-CNN and DA-CNN (``utterance_norm=2``): ``accuracy_norm.json`` (seed 0;
  ``bench_accuracy.py --models da_cnn,sa_cnn --references "" --tag norm``) and
  ``accuracy_norm_seed1.json``, ``accuracy_norm_seed2.json`` (``--models da_cnn,sa_cnn
  --references "" --mode-augmentation "" --seed S --tag norm_seedS``);
* the DFT-CNN (Hann window, 800 steps): ``accuracy_dft.json`` (seed 0) and
  ``accuracy_seed1.json``, ``accuracy_seed2.json``;
* the GSV-SVM: ``accuracy.json`` (seed 0) and ``accuracy_seed1.json``,
  ``accuracy_seed2.json`` (``--models da_cnn,sa_cnn,dft_cnn,gsv_svm --references ""
  --mode-augmentation "" --seed S --tag seedS``).

A seed draws the corpus (its speakers and device chains) and the models' initialisation
and shuffling; each seed's figure is the mean over its 3 speaker folds. Writes
``bench/results/accuracy_seeds.md``.

Usage (from the repository root)::

    python bench/summarise_seeds.py
"""

from __future__ import annotations

import json

import numpy as np
from _common import RESULTS

MODELS = {"da_cnn": "DA-CNN", "sa_cnn": "SA-CNN", "dft_cnn": "DFT-CNN", "gsv_svm": "GSV-SVM"}
CONDITIONS = ("N", "W", "N/W", "W/N")


#: model -> the result files of seeds 0, 1 and 2 at its 0.6 defaults
SOURCES = {"da_cnn": ("accuracy_norm", "accuracy_norm_seed1", "accuracy_norm_seed2"),
           "sa_cnn": ("accuracy_norm", "accuracy_norm_seed1", "accuracy_norm_seed2"),
           "dft_cnn": ("accuracy_dft", "accuracy_seed1", "accuracy_seed2"),
           "gsv_svm": ("accuracy", "accuracy_seed1", "accuracy_seed2")}


def seed_values():
    files = {}
    out = {}
    for m, names in SOURCES.items():
        for name in names:
            if name not in files:
                files[name] = json.loads((RESULTS / f"{name}.json").read_text())
        for corpus in ("default", "fsdd"):
            for c in CONDITIONS:
                out[corpus, m, c] = [files[n]["runs"][corpus]["summary"][f"{m}|{c}"]["mean"] for n in names]
    return out


def main():
    vals = seed_values()
    lines = ["# Accuracy over 3 seeds (0, 1, 2)", "",
             "Speaker 3-fold GroupKFold per seed, library defaults (0.6), 2 parallel fits of one "
             "torch thread; mean ± std over the 3 seeds of each seed's 3-fold mean (%). Made by "
             "`bench/summarise_seeds.py` from the files it names.", ""]
    for corpus in ("default", "fsdd"):
        lines += [f"## {corpus} corpus", "", "| model | " + " | ".join(CONDITIONS) + " |",
                  "|---|" + "---|" * len(CONDITIONS)]
        for m, label in MODELS.items():
            cells = [f"{np.mean(vals[corpus, m, c]):.1f} ± {np.std(vals[corpus, m, c]):.1f}"
                     for c in CONDITIONS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "Claims (3-seed means, and in how many of the 3 seeds each holds):", ""]
        for a, b, what in (("da_cnn", "dft_cnn", "DA-CNN ≥ DFT-CNN"),
                           ("da_cnn", "sa_cnn", "DA-CNN ≥ SA-CNN")):
            for c in ("N", "W"):
                x, y = vals[corpus, a, c], vals[corpus, b, c]
                wins = sum(p >= q for p, q in zip(x, y))
                lines.append(f"- {what} in {c}: {np.mean(x):.1f} vs {np.mean(y):.1f} "
                             f"({'holds' if np.mean(x) >= np.mean(y) else 'does not hold'}; "
                             f"{wins} of 3 seeds)")
        x, y = vals[corpus, "da_cnn", "W"], vals[corpus, "da_cnn", "N"]
        lines.append(f"- DA-CNN whisper ≥ neutral: W {np.mean(x):.1f} vs N {np.mean(y):.1f} "
                     f"({sum(p >= q for p, q in zip(x, y))} of 3 seeds)")
        for m in MODELS:
            drop = np.mean(vals[corpus, m, "N"]) - np.mean(vals[corpus, m, "N/W"])
            drop2 = np.mean(vals[corpus, m, "W"]) - np.mean(vals[corpus, m, "W/N"])
            lines.append(f"- mismatch drop, {MODELS[m]}: N→N/W {drop:.1f} points, W→W/N {drop2:.1f}")
        lines.append("")
    text = "\n".join(lines)
    (RESULTS / "accuracy_seeds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
