"""Accuracy on DSB 2018 fluorescence nuclei (fixed split: sorted ids, 80% train / 20% test)
of the default U-Net vs two baselines computed in the same run (Otsu + distance-transform
watershed; scikit-image random-forest segmentation trained on the same annotations); plus
semantic Dice on the ISBI 2012 EM membranes (slices 0-23 train, 24-29 test).

    python bench/bench_accuracy.py [--minutes 20] [--em-minutes 6] [--section accuracy]
                                   [--set NAME=VALUE ...]

`--em-minutes 0` skips the EM set; `--section` names the docs/benchmarks.md section written
(so a run with another time budget or settings does not replace the default one); `--set`
changes a U-Net training setting (a `TrainConfig` field, e.g. `--set image_power=0.5`).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import baselines  # noqa: E402
from bench._report import write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402
from models import predict  # noqa: E402
from models.calibration import calibrate  # noqa: E402
from models.instances import instances_from_probs  # noqa: E402
from models.metrics import mean_scores, score  # noqa: E402
from models.training import (CALIBRATION_FRACTION, CALIBRATION_RATE,  # noqa: E402
                             TrainConfig, calibration_pixels, train_model)

DEFAULT = dict(width=16, depth=4, patch=128, batch=16, steps_per_epoch=100, epochs=400,
               patience=12, lr=2e-3, val_fraction=0.1)


def evaluate(name: str, predict_fn, inputs, labels) -> dict:
    """Mean scores of `predict_fn(input)` (an image, or class probabilities) over a set."""
    t = time.perf_counter()
    scores = [score(lab, predict_fn(x)) for x, lab in zip(inputs, labels)]
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


def row(name: str, m: dict) -> str:
    return (f"| {name} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {m['mean_matched_iou']:.3f} | {m['dice']:.3f} | {m['mean_abs_count_error']:.1f} |")


def post_text(post: dict) -> str:
    return (f"foreground > {post['fg_threshold']:.1f}, split h = {post['split']:g}, "
            f"min size {post['min_size']} px")


def settings(pairs: list[str]) -> dict:
    """`NAME=VALUE` pairs as TrainConfig fields, each VALUE converted to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields or not value:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(fields)}")
        default = getattr(TrainConfig(), name)
        if isinstance(default, bool):
            out[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)):
            out[name] = type(default)(value)
        else:
            out[name] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--em-minutes", type=float, default=6.0)
    parser.add_argument("--section", default="accuracy")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    DEFAULT.update(settings(args.set))
    train_ids, test_ids = fluorescence_split()
    train_x, train_y = load(train_ids)
    test_x, test_y = load(test_ids)
    print(f"train {len(train_ids)} test {len(test_ids)}", flush=True)

    otsu = evaluate("otsu", baselines.otsu_watershed, test_x, test_y)

    def report(entry):
        if entry.get("phase") == "calibration":
            print("choosing the post-processing", flush=True)
            return
        print("epoch", entry["epoch"], "step", entry["step"], "loss", round(entry["loss"], 4),
              "val f1", round(entry.get("val_f1", 0), 4), f"{entry['seconds']:.0f}s", flush=True)

    result = train_model(train_x, train_y, config=TrainConfig(**DEFAULT,
                                                              max_seconds=args.minutes * 60),
                         progress=report)
    model, post = result.model, result.model.meta["postprocess"]
    print("U-Net post-processing", post, flush=True)
    unet_probs = [model.probabilities(x) for x in test_x]
    unet = evaluate("unet", lambda p: model.instances(p), unet_probs, test_y)
    unet_default = evaluate("unet default post-processing", instances_from_probs,
                            unet_probs, test_y)

    # The forest learns from the same training images as the U-Net and its post-processing
    # is chosen the same way, on the same images (`result.calibration_ids`). Forests fit
    # their training pixels closely, so it is also chosen on the validation images alone;
    # the better forest on test is the baseline.
    fit_x = [train_x[i] for i in result.train_ids]
    fit_y = [train_y[i] for i in result.train_ids]
    t = time.perf_counter()
    forest = baselines.train_random_forest(fit_x, fit_y)
    rf_train_s = time.perf_counter() - t
    rf_probs = [baselines.random_forest_probs(forest, x) for x in test_x]
    forests = {}
    for name, ids in (("validation and training images", result.calibration_ids),
                      ("validation images", result.val_ids)):
        chosen = calibrate([baselines.random_forest_probs(forest, train_x[i]) for i in ids],
                           [train_y[i] for i in ids], train_labels=fit_y)
        rf_post = {k: chosen[k] for k in ("fg_threshold", "split", "min_size")}
        print("forest post-processing on", name, chosen, flush=True)
        forests[name] = (rf_post, evaluate(f"random forest ({name})",
                                           lambda p: instances_from_probs(p, **rf_post),
                                           rf_probs, test_y))
    rf_default = evaluate("random forest default post-processing", instances_from_probs,
                          rf_probs, test_y)
    rf = max((m for _, m in forests.values()), key=lambda m: m["f1"])
    best_baseline = max(otsu["f1"], rf["f1"])
    em_row = (em_benchmark(args.em_minutes) if args.em_minutes > 0
              else "| not run (--em-minutes 0) | | | |")
    forest_rows = "\n".join(row(f"random forest, post-processing chosen on {name} ({post_text(p)})", m)
                            for name, (p, m) in forests.items())
    cal = post["calibration"]
    body = f"""Split: {len(train_ids)} training / {len(test_ids)} test fluorescence images (ids sorted;
first 80% train). Of the training images, {len(result.val_ids)} (10%, seed 0) are the validation
set for early stopping. The post-processing (`models.calibration`: foreground threshold, seed
splitting h, smallest cell, by F1) is chosen on the validation images followed by other training
images, up to {calibration_pixels(TrainConfig(max_seconds=args.minutes * 60)) / 1e6:.1f} megapixels
({CALIBRATION_FRACTION:.0%} of the time budget at {CALIBRATION_RATE:,} pixels/s; this run: {cal["n_images"]} images, {cal["n_validation_images"]} of them validation, {cal["n_cells"]}
cells); test images are never used. Metrics are means over test
images; F1 at IoU 0.5 with one-to-one matching.

| method | F1@0.5 | precision | recall | mean matched IoU | pixel Dice | mean abs count error |
|---|---|---|---|---|---|---|
{row("Otsu + distance-transform watershed", otsu)}
{row(f"random forest (multiscale features, {rf_train_s / 60:.1f} min to train), default post-processing", rf_default)}
{forest_rows}
{row("U-Net, default post-processing (foreground > 0.5, no split, min size 12 px)", unet_default)}
{row(f"**U-Net ({', '.join(args.set) or 'CellLoop default'})**, post-processing chosen on validation and training images ({post_text(post)})", unet)}

U-Net: width {DEFAULT['width']}, depth {DEFAULT['depth']}, {DEFAULT['patch']}px patches, batch
{DEFAULT['batch']}, trained {result.seconds / 60:.1f} min on this CPU
({result.model.meta.get('training_engine', '?')}, {result.steps} steps,
{result.patches_per_s:.1f} patches/s, stopped by {result.stopped}, best epoch
{result.best_epoch}). The random forest is trained on the same {len(fit_x)} images (3,000 pixels
each). F1 margin of the U-Net over the best baseline (the better forest on the test
images, which favours the baseline): **{unet['f1'] - best_baseline:+.3f}**
(goal: F1 >= 0.88 and >= +0.08).

EM membranes (ISBI 2012, semantic):

| measure | U-Net | baseline | training |
|---|---|---|---|
{em_row}
"""
    title = "Accuracy on DSB 2018 and ISBI 2012 (issue 5)"
    if args.section != "accuracy":
        title += f", U-Net trained {args.minutes:g} min" + "".join(f", {p}" for p in args.set)
    write_section(args.section, title, body)


if __name__ == "__main__":
    main()
