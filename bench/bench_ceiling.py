"""Ceiling of the instance post-processing on the DSB 2018 test split: what F1@0.5 would a
perfect network get?

The "perfect network" outputs the ground truth's own training target (`targets_from_labels`:
background, interior, inner boundary) as probabilities of 0 and 1; `instances_from_probs`
turns that into cells as it does for a real network, and the cells are scored against the
same ground truth. A result near 1 means the three-class representation and the
post-processing lose almost nothing, so the gap between a trained U-Net and F1 1 is the
network's. Rows: the default settings and the settings the accuracy runs chose by calibration.

    python bench/bench_ceiling.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402

from models.data import targets_from_labels  # noqa: E402
from models.instances import instances_from_probs  # noqa: E402
from models.metrics import mean_scores, score  # noqa: E402

# (foreground threshold, seed-splitting h, smallest cell): the defaults, then what calibration
# chose in the accuracy sections of docs/benchmarks.md
SETTINGS = [(0.5, 0.0, 12), (0.5, 0.5, 20), (0.6, 0.5, 30), (0.7, 0.5, 20), (0.7, 0.5, 30)]


def one_hot(target: np.ndarray) -> np.ndarray:
    return np.stack([(target == k).astype(np.float32) for k in range(3)])


def main() -> None:
    _, test_ids = fluorescence_split()
    _, labels = load(test_ids)
    probs = [one_hot(targets_from_labels(lab)) for lab in labels]
    rows = []
    for threshold, split, min_size in SETTINGS:
        t0 = time.perf_counter()
        m = mean_scores([score(lab, instances_from_probs(p, min_size, threshold, split))
                         for lab, p in zip(labels, probs)])
        rows.append(f"| > {threshold} | {split} | {min_size} px | {m['f1']:.3f} | "
                    f"{m['precision']:.3f} | {m['recall']:.3f} | {m['mean_matched_iou']:.3f} | "
                    f"{time.perf_counter() - t0:.1f} |")
    sizes = np.concatenate([np.bincount(lab.ravel())[1:] for lab in labels])
    sizes = sizes[sizes > 0]
    small = ", ".join(f"{(sizes < s).sum()} under {s} px" for s in (12, 20, 30))
    body = f"""
{len(labels)} test images of the fluorescence split (ids sorted, last 20%), {sizes.size} cells
({small}). Probabilities: the one-hot training target made from the ground truth; cells:
`models.instances.instances_from_probs`; score: F1 at IoU 0.5, one-to-one matching, mean over
images (as in bench_accuracy.py).

| foreground | split h | smallest cell | F1@0.5 | precision | recall | mean matched IoU | seconds |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

A perfect network would reach these; compare the trained U-Net's F1 in the accuracy
sections. Larger smallest-cell settings cost recall here because the ground truth has cells
that small.
"""
    write_section("ceiling", "Post-processing ceiling on DSB 2018 (issue 5)", body)


if __name__ == "__main__":
    main()
