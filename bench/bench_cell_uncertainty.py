"""Per-cell uncertainty of a suggestion (models.cell_uncertainty): what it costs on a 512x512
image against the plain prediction for a few numbers of MC passes, how stable the cell
ranking is in the number of passes, and whether the score finds the suggested cells that are
wrong (no true cell with IoU >= 0.5) on DSB test images with the shipped model.

    python bench/bench_cell_uncertainty.py [--images 12] [--mixed]

--mixed: the cell-score comparison on 6 images of each DSB modality and colour (24 images up
to 600x700, seed 1; the figures in models/cell_uncertainty.py) instead of the first
fluorescence test images.

Prints its figures (a helper's measurement; not written into docs/benchmarks.md)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.dsb import fluorescence_split, load  # noqa: E402
from models import uncertainty  # noqa: E402
from models.builtin import load_builtin  # noqa: E402
from models.cell_uncertainty import (PASSES, cell_scores, predict_with_uncertainty,  # noqa: E402
                                     score_cells)
from models.inference import predict_image  # noqa: E402


def best_ms(fn, repeat: int = 7) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process's threads): on a shared machine the
    CPU time is the steadier figure."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def wrong_cells(pred: np.ndarray, truth: np.ndarray) -> dict[int, bool]:
    """{predicted label: True when no true cell overlaps it with IoU >= 0.5}."""
    out = {}
    for label in np.unique(pred[pred > 0]):
        mask = pred == label
        hit = truth[mask]
        best = 0.0
        for t in np.unique(hit[hit > 0]):
            other = truth == t
            best = max(best, (mask & other).sum() / (mask | other).sum())
        out[int(label)] = best < 0.5
    return out


def auc(scores: list[float], positive: list[bool]) -> float:
    s, p = np.asarray(scores), np.asarray(positive)
    pos, neg = s[p], s[~p]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                 / (len(pos) * len(neg)))


def mixed_images() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """6 images of each DSB group (modality, colour or grey), up to 600x700, as one grey
    channel, with their labels."""
    import json

    import tifffile

    from bench.dsb import DATA
    from models.builtin import read_image
    index = json.loads((DATA / "index.json").read_text())
    rng = np.random.default_rng(1)
    groups: dict[str, list[str]] = {}
    for d in index:
        if d["shape"][0] <= 600 and d["shape"][1] <= 700:
            groups.setdefault(d["modality"] + ("" if d["gray"] else "-colour"), []).append(d["id"])
    images, truths = [], []
    for ids in groups.values():
        for i in rng.choice(ids, min(6, len(ids)), replace=False):
            img = read_image(DATA, i)
            img = img[:3].mean(0, keepdims=True).astype(np.float32) if img.shape[0] > 1 else img
            images.append(img)
            truths.append(tifffile.imread(DATA / "labels" / f"{i}.tif"))
    return images, truths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    model = load_builtin()
    print("engine", model.runtime().engine, "load", os.getloadavg())
    if not args.no_timing:
        timings(model)
    quality(model, args)


def timings(model) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    big = np.zeros((512, 512), np.float32)
    for _ in range(80):
        cy, cx, r = rng.integers(10, 502), rng.integers(10, 502), rng.integers(5, 12)
        big[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    image = (rng.normal(400, 60, big.shape) + big * 2500).clip(0).astype(np.uint16)
    plain, plain_cpu = best_ms(lambda: predict_image(model, image))
    print(f"512x512 plain prediction (predict_image): {plain:.0f} ms wall, "
          f"{plain_cpu:.0f} ms CPU")
    for passes in (4, 8, 16, 32):
        ms, cpu = best_ms(lambda: predict_with_uncertainty(model, image, passes=passes))
        print(f"512x512 prediction + per-cell uncertainty, {passes:2d} passes: {ms:.0f} ms "
              f"wall, {cpu:.0f} ms CPU ({cpu / plain_cpu:.2f}x plain CPU)")
    labels = predict_image(model, image).labels
    ms, cpu = best_ms(lambda: score_cells(model, image, labels))
    print(f"512x512 scoring the cells on screen afterwards (score_cells, {PASSES} passes): "
          f"{ms:.0f} ms wall, {cpu:.0f} ms CPU")


def quality(model, args) -> None:
    if args.mixed:
        images, truths = mixed_images()
    else:
        _, test = fluorescence_split()
        images, truths = load(test[:args.images])
    by_passes: dict[int, list[float]] = {4: [], 8: [], 16: [], 64: []}
    entropy_s, mi_s, wrong = [], [], []
    for img, truth in zip(images, truths):
        for passes in by_passes:
            labels, scores = predict_with_uncertainty(model, img, passes=passes)
            by_passes[passes].extend(scores[k] for k in sorted(scores))
        u = uncertainty.mc_dropout(model, img, passes=8, stride=2, deterministic=True)
        labels = model.instances(u.deterministic)
        if not labels.max():
            continue
        ent = cell_scores(labels, u.entropy / np.log(3))
        mi = cell_scores(labels, u.mutual_information / np.log(3))
        bad = wrong_cells(labels, truth)
        for k in sorted(ent):
            entropy_s.append(ent[k]), mi_s.append(mi[k]), wrong.append(bad[k])
    ref = np.asarray(by_passes[64])
    from scipy.stats import spearmanr
    for passes in (4, 8, 16):
        rho = spearmanr(np.asarray(by_passes[passes]), ref).statistic
        print(f"rank correlation of cell scores, {passes} vs 64 passes: {rho:.3f}")
    e = np.asarray(entropy_s)
    print(f"{len(e)} suggested cells on {len(images)} DSB images, "
          f"{int(np.sum(wrong))} wrong (IoU < 0.5)")
    print("entropy score quantiles 10/50/90/99%:",
          np.round(np.percentile(e, [10, 50, 90, 99]), 3))
    print(f"AUC finding wrong cells: entropy score {auc(entropy_s, wrong):.3f}, "
          f"BALD score {auc(mi_s, wrong):.3f}")
    from models.cell_uncertainty import UNCERTAIN_AT
    flagged = e >= UNCERTAIN_AT
    w = np.asarray(wrong)
    print(f"at UNCERTAIN_AT={UNCERTAIN_AT}: {flagged.mean():.0%} of cells to check, holding "
          f"{(flagged & w).sum() / max(1, w.sum()):.0%} of the wrong ones")
    for t in (0.05, 0.1, 0.15, 0.2, 0.3):
        f = e >= t
        print(f"  threshold {t}: {f.mean():.0%} flagged, "
              f"recall of wrong {(f & w).sum() / max(1, w.sum()):.0%}")


if __name__ == "__main__":
    main()
