"""Accuracy on DSB 2018 fluorescence nuclei (fixed split: sorted ids, 80% train / 20% test)
of the default U-Net vs two baselines computed in the same run (Otsu + distance-transform
watershed; scikit-image random-forest segmentation trained on the same annotations); plus
semantic Dice on the ISBI 2012 EM membranes (slices 0-23 train, 24-29 test).

    python bench/bench_accuracy.py [--minutes 20] [--em-minutes 6]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import baselines  # noqa: E402
from bench._report import write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402
from models import predict  # noqa: E402
from models.metrics import mean_scores, score  # noqa: E402
from models.training import TrainConfig, train_model  # noqa: E402

DEFAULT = dict(width=16, depth=4, patch=128, batch=16, steps_per_epoch=100, epochs=400,
               patience=12, lr=2e-3, val_fraction=0.1)


def evaluate(name: str, predict_fn, images, labels) -> dict:
    t = time.perf_counter()
    scores = [score(lab, predict_fn(img)) for img, lab in zip(images, labels)]
    out = mean_scores(scores)
    out["seconds"] = time.perf_counter() - t
    print(name, {k: round(v, 3) for k, v in out.items()}, flush=True)
    return out


def em_benchmark(minutes: float) -> str:
    """ISBI 2012 EM: train/image/N.png + train/label/N.png (0 = membrane), slices sorted by N."""
    from PIL import Image

    root = (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "em_isbi2012"
            / "data" / "membrane" / "train")
    if not (root / "image").is_dir():
        return "| EM set not found at ../shared/data/em_isbi2012; skipped | | | |"
    ids = sorted(int(p.stem) for p in (root / "image").glob("*.png"))
    volume = [np.asarray(Image.open(root / "image" / f"{i}.png").convert("L")) for i in ids]
    membrane = [(np.asarray(Image.open(root / "label" / f"{i}.png").convert("L")) < 128
                 ).astype(np.uint8) for i in ids]
    train_x, test_x, train_y, test_y = volume[:24], volume[24:], membrane[:24], membrane[24:]
    result = train_model(train_x, train_y, config=TrainConfig(
        **{**DEFAULT, "patch": 256, "batch": 8}, semantic=True, n_classes=2,
        max_seconds=minutes * 60))

    def dice(pred, m):
        return 2 * np.logical_and(pred, m == 1).sum() / max(1, pred.sum() + (m == 1).sum())

    unet = np.mean([dice(predict(result.model, x).labels == 1, m) for x, m in zip(test_x, test_y)])
    from skimage.filters import threshold_otsu
    otsu = np.mean([dice(x < threshold_otsu(x), m) for x, m in zip(test_x, test_y)])
    return (f"| membrane Dice (slices 24-29) | {unet:.3f} | Otsu, dark = membrane: {otsu:.3f} "
            f"| {result.seconds / 60:.1f} min, {result.steps} steps |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--em-minutes", type=float, default=6.0)
    args = parser.parse_args()
    train_ids, test_ids = fluorescence_split()
    train_x, train_y = load(train_ids)
    test_x, test_y = load(test_ids)
    print(f"train {len(train_ids)} test {len(test_ids)}", flush=True)

    otsu = evaluate("otsu", baselines.otsu_watershed, test_x, test_y)
    t = time.perf_counter()
    forest = baselines.train_random_forest(train_x, train_y)
    rf_train_s = time.perf_counter() - t
    rf = evaluate("random forest", lambda im: baselines.random_forest_instances(forest, im),
                  test_x, test_y)

    def report(entry):
        print("epoch", entry["epoch"], "step", entry["step"], "loss", round(entry["loss"], 4),
              "val f1", round(entry.get("val_f1", 0), 4), f"{entry['seconds']:.0f}s", flush=True)

    result = train_model(train_x, train_y, config=TrainConfig(**DEFAULT,
                                                              max_seconds=args.minutes * 60),
                         progress=report)
    unet = evaluate("unet", lambda im: predict(result.model, im).labels, test_x, test_y)
    best_baseline = max(otsu["f1"], rf["f1"])
    em_row = em_benchmark(args.em_minutes)
    body = f"""Split: {len(train_ids)} training / {len(test_ids)} test fluorescence images (ids sorted;
first 80% train). Metrics are means over test images; F1 at IoU 0.5 with one-to-one matching.

| method | F1@0.5 | precision | recall | mean matched IoU | pixel Dice | mean abs count error |
|---|---|---|---|---|---|---|
| Otsu + distance-transform watershed | {otsu['f1']:.3f} | {otsu['precision']:.3f} | {otsu['recall']:.3f} | {otsu['mean_matched_iou']:.3f} | {otsu['dice']:.3f} | {otsu['mean_abs_count_error']:.1f} |
| random forest (multiscale features, {rf_train_s / 60:.1f} min to train) | {rf['f1']:.3f} | {rf['precision']:.3f} | {rf['recall']:.3f} | {rf['mean_matched_iou']:.3f} | {rf['dice']:.3f} | {rf['mean_abs_count_error']:.1f} |
| **U-Net (CellLoop default)** | **{unet['f1']:.3f}** | {unet['precision']:.3f} | {unet['recall']:.3f} | {unet['mean_matched_iou']:.3f} | {unet['dice']:.3f} | {unet['mean_abs_count_error']:.1f} |

U-Net: width {DEFAULT['width']}, depth {DEFAULT['depth']}, {DEFAULT['patch']}px patches, batch
{DEFAULT['batch']}, trained {result.seconds / 60:.1f} min on this CPU ({result.steps} steps,
{result.patches_per_s:.1f} patches/s, stopped by {result.stopped}, best epoch
{result.best_epoch}). F1 margin over the best baseline: {unet['f1'] - best_baseline:+.3f}
(goal: F1 >= 0.88 and >= +0.08).

EM membranes (ISBI 2012, semantic):

| measure | U-Net | baseline | training |
|---|---|---|---|
{em_row}
"""
    write_section("accuracy", "Accuracy on DSB 2018 and ISBI 2012 (issue 5)", body)


if __name__ == "__main__":
    main()
