"""Counting from points (issue 23) on the Kainz et al. 2015 bone-marrow H&E set
(`../shared/data/points_bonemarrow_kainz2015`: 11 RGB images of 1200x1200, one click per
cell in annotations/*.txt, "x y class" after a header line; both classes count as cells).

Split (fixed, by rule): ids sorted, the first 8 train, the last 3 test (BM_GRAZ_HE_0007_01,
0008_01, 0020_01: patients 0007, 0008, 0020, none of them in training). Published works
(Count-ception, Cohen et al. 2017; FCRN-A, Xie et al.) used random splits of 600x600 crops
of these images, so this split does not match theirs; to compare in their unit, every test
image is also counted as its four 600x600 quarters, each taken as an image of its own.

Side by side, from one run, on the test images:
(a) the point model (`models.counting`, trained from the clicks of the training images only),
(b) the built-in segmentation model nuclei-v1 (`models/pretrained/`, zero-shot: number of
    instances; in quarters, instances whose centroid lies in the quarter),
(c) the LoG blob baseline (`models.count_baseline`), its sigma range and threshold chosen by
    grid search on the training images only.
MAE +- sd and mean relative error of the count; detection F1 of the points (a found point
matches a click within 10 px, one to one); for (a) the 5-95% MC-dropout interval and how
many test images' true count it holds; (a') the point model as the app trains it, on 80% of
the training tiles, with the 90% interval calibrated on the other 20% (how many test
images' true count it holds is the check of the calibration).

Learning curve in clicks: the training images cut into 300x300 tiles (128), shuffled with
the seed; the point model trained (same steps) on the first n tiles only, each as an
annotated region with its clicks (the loss is computed inside the tiles only), for growing
n; the clicks at which the test MAE first comes within 10% of the full-data model's.

Cross-validation (`--folds K`): the fixed split has only 3 test images, too few to tell
settings apart, so every image is also a test image once: the patients (the id without its
last `_NN` part) dealt in sorted order to K folds; per fold the point model is trained and
LoG tuned on the other folds' images only, and both count the fold's images (whole and
quarters). MAE +- sd over all 11 images / 44 quarters.

    python bench/bench_counting.py                 # writes docs/benchmarks.md
    python bench/bench_counting.py --folds 3       # + cross-validation, writes it too
    python bench/bench_counting.py --folds 3 --folds-only   # CV only: prints, writes nothing
    python bench/bench_counting.py --quick         # smoke run: prints, writes nothing
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._report import machine, write_section  # noqa: E402

from models import count_baseline  # noqa: E402
from models.count_interval import calibrate_interval  # noqa: E402
from models.counting import CountingParams, count_image, peak_map, points_for, \
    train_counter  # noqa: E402
from models.density import find_peaks, strongest_peaks  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "points_bonemarrow_kainz2015" / "data" / "BM_GRAZ"
N_TRAIN = 8
QUARTER = 600
TILE = 300
MATCH_PX = 10.0


def load(data: Path = DATA):
    ids = sorted(p.stem for p in (data / "source").glob("*.png"))
    images, points = [], []
    for i in ids:
        rgb = np.asarray(Image.open(data / "source" / f"{i}.png").convert("RGB"))
        images.append(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)))      # (3, Y, X)
        xy = np.loadtxt(data / "annotations" / f"{i}.txt", skiprows=1, ndmin=2)[:, :2]
        points.append(xy[:, ::-1].astype(np.float64))                     # (y, x)
    return ids, images, points


def quarters(image, pts):
    """The four QUARTER x QUARTER crops of an image, with their points (shifted)."""
    out = []
    for y0 in range(0, image.shape[1], QUARTER):
        for x0 in range(0, image.shape[2], QUARTER):
            inside = (pts[:, 0] >= y0) & (pts[:, 0] < y0 + QUARTER) & \
                (pts[:, 1] >= x0) & (pts[:, 1] < x0 + QUARTER)
            out.append((image[:, y0:y0 + QUARTER, x0:x0 + QUARTER],
                        pts[inside] - [y0, x0]))
    return out


def matched(found, truth, radius: float = MATCH_PX) -> int:
    """Found points paired one-to-one with clicked cells within `radius` px."""
    found, truth = np.asarray(found, float).reshape(-1, 2), np.asarray(truth, float)
    if not len(found) or not len(truth):
        return 0
    d = np.hypot(*(truth[:, None, :] - found[None, :, :]).transpose(2, 0, 1))
    rows, cols = linear_sum_assignment(np.where(d <= radius, d, 1e6))
    return int((d[rows, cols] <= radius).sum())


def f1(found, truth, radius: float = MATCH_PX) -> float:
    n, t = len(np.asarray(found).reshape(-1, 2)), len(truth)
    if not n or not t:
        return float(n == t)
    return 2 * matched(found, truth, radius) / (n + t)


def corrections(found, truth, radius: float = MATCH_PX) -> int:
    """Clicks to turn the found points into the clicked ones: remove each unmatched point,
    add each unmatched cell."""
    n, t = len(np.asarray(found).reshape(-1, 2)), len(truth)
    return n + t - 2 * matched(found, truth, radius)


def read_outs(model, r) -> dict:
    """The points of one count under each rule, whichever the model uses (r from
    count_image(keep_density=True)): "threshold", the peaks above the calibrated threshold;
    "count", the round(count) highest peaks above the grid's lowest threshold; "topped",
    the threshold's peaks topped up with the next highest to round(count)."""
    k = points_for(r.count)
    pm = peak_map(r.density, model.sigma)
    above, _ = find_peaks(pm, model.threshold, model.min_distance)
    by_count, _ = strongest_peaks(pm, k, model.floor, model.min_distance)
    topped, _ = strongest_peaks(pm, max(k, len(above)), model.floor, model.min_distance)
    return {"threshold": above, "count": by_count, "topped": topped}


def summary(pred, truth) -> dict:
    pred, truth = np.asarray(pred, float), np.asarray(truth, float)
    err = np.abs(pred - truth)
    return {"mae": float(err.mean()), "sd": float(err.std(ddof=1)) if len(err) > 1 else 0.0,
            "rel": float((err / np.maximum(truth, 1)).mean()), "bias": float((pred - truth).mean())}


def evaluate_point_model(model, sets, mc: int) -> dict:
    """sets: {"whole": [(image, pts)], "quarters": [...]} -> per set: counts, F1, intervals."""
    out = {}
    for name, items in sets.items():
        counts, f1s, inside, widths, truth, peaks = [], [], [], [], [], []
        started = time.perf_counter()
        for image, pts in items:
            r = count_image(model, image, mc_samples=mc, keep_density=True)
            counts.append(r.count)
            peaks.append(len(read_outs(model, r)["threshold"]))
            truth.append(len(pts))
            f1s.append(f1(r.points, pts))
            inside.append(r.low <= len(pts) <= r.high)
            widths.append(r.high - r.low)
        out[name] = {**summary(counts, truth), "f1": float(np.mean(f1s)),
                     "coverage": float(np.mean(inside)), "width": float(np.mean(widths)),
                     "counts": [round(c, 1) for c in counts], "truth": truth,
                     "peaks": summary(peaks, truth),
                     "seconds_per_image": (time.perf_counter() - started) / len(items)}
    return out


def evaluate_builtin(sets) -> dict:
    from skimage.measure import regionprops
    from models.builtin import load_builtin
    from models.inference import predict_image
    model = load_builtin()
    out = {}
    for name, items in sets.items():
        counts, f1s, truth = [], [], []
        started = time.perf_counter()
        for image, pts in items:
            labels = predict_image(model, image).labels
            centres = np.array([r.centroid for r in regionprops(labels)]).reshape(-1, 2)
            counts.append(len(centres))
            truth.append(len(pts))
            f1s.append(f1(centres, pts))
        out[name] = {**summary(counts, truth), "f1": float(np.mean(f1s)), "counts": counts,
                     "truth": truth,
                     "seconds_per_image": (time.perf_counter() - started) / len(items)}
    out["engine"] = model.runtime().name
    return out


def evaluate_log(params, sets) -> dict:
    out = {}
    for name, items in sets.items():
        counts, f1s, truth = [], [], []
        started = time.perf_counter()
        for image, pts in items:
            found = count_baseline.detect(image, params)
            counts.append(len(found))
            truth.append(len(pts))
            f1s.append(f1(found, pts))
        out[name] = {**summary(counts, truth), "f1": float(np.mean(f1s)), "counts": counts,
                     "truth": truth,
                     "seconds_per_image": (time.perf_counter() - started) / len(items)}
    return out


def tiles(images, points, seed: int):
    """Every TILE x TILE tile of the training images as (image index, region, its points),
    in a seeded random order."""
    out = []
    for k, (image, pts) in enumerate(zip(images, points)):
        for y0 in range(0, image.shape[1], TILE):
            for x0 in range(0, image.shape[2], TILE):
                region = np.zeros(image.shape[1:], bool)
                region[y0:y0 + TILE, x0:x0 + TILE] = True
                inside = (pts[:, 0] >= y0) & (pts[:, 0] < y0 + TILE) & \
                    (pts[:, 1] >= x0) & (pts[:, 1] < x0 + TILE)
                out.append((k, region, pts[inside]))
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def subset(images, chosen):
    """Training data from a list of tiles: per image touched, the union of its tiles'
    regions and their clicks."""
    per = {}
    for k, region, pts in chosen:
        reg, ps = per.get(k, (np.zeros_like(region), []))
        per[k] = (reg | region, ps + [pts])
    keys = sorted(per)
    return ([images[k] for k in keys], [np.concatenate(per[k][1]) for k in keys],
            [per[k][0] for k in keys])


def patient(image_id: str) -> str:
    """BM_GRAZ_HE_0001_02 -> BM_GRAZ_HE_0001 (two images of one patient share it)."""
    return image_id.rsplit("_", 1)[0]


def folds_of(ids, k: int) -> list[list[int]]:
    """Image indices per fold: the sorted patients dealt round-robin to k folds."""
    patients = sorted({patient(i) for i in ids})
    fold_of = {p: n % k for n, p in enumerate(patients)}
    return [[j for j, i in enumerate(ids) if fold_of[patient(i)] == f] for f in range(k)]


def cross_validate(ids, images, points, params, k: int, init=None, log=print,
                   only: list[int] | None = None) -> dict:
    """Leave-patients-out CV: per fold, LoG tuned and the point model trained on the other
    folds' images; both count the fold's images, whole and in quarters. `only`: run just
    these folds (the figures then cover their images only)."""
    per = {m: {"whole": [None] * len(ids), "quarters": [None] * len(ids)}
           for m in ("point", "raw", "peaks", "topped", "log")}
    f1s = {m: [None] * len(ids) for m in ("point", "threshold", "count", "topped", "log")}
    fixes = {m: [None] * len(ids) for m in ("threshold", "count", "topped", "log")}
    folds, fold_info = folds_of(ids, k), []
    started = time.perf_counter()
    for f, test_idx in enumerate(folds):
        if only is not None and f not in only:
            continue
        train_idx = [j for j in range(len(ids)) if j not in test_idx]
        tr_img, tr_pts = [images[j] for j in train_idx], [points[j] for j in train_idx]
        log_params, _ = count_baseline.tune(tr_img, tr_pts)
        t = time.perf_counter()
        model = train_counter(tr_img, tr_pts, params=params, init=init)
        seconds = time.perf_counter() - t
        fold_info.append({"fold": f, "test": [ids[j].replace("BM_GRAZ_HE_", "")
                                              for j in test_idx],
                          "factor": model.count_factor,
                          "threshold": model.meta["peaks"]["threshold"],
                          "selected_step": model.meta["training"].get("selected_step"),
                          "log": f"{log_params.min_sigma}-{log_params.max_sigma}/"
                                 f"{log_params.threshold}", "seconds": round(seconds)})
        for j in test_idx:
            units = {"whole": [(images[j], points[j])],
                     "quarters": quarters(images[j], points[j])}
            for unit, items in units.items():
                rows = {m: [] for m in per}
                for image, pts in items:
                    r = count_image(model, image, mc_samples=0, keep_density=True)
                    found = count_baseline.detect(image, log_params)
                    rules = read_outs(model, r)
                    rows["point"].append(r.count)
                    rows["raw"].append(r.count / model.count_factor)
                    rows["peaks"].append(len(rules["threshold"]))
                    rows["topped"].append(len(rules["topped"]))
                    rows["log"].append(len(found))
                    if unit == "whole":
                        f1s["point"][j], f1s["log"][j] = f1(r.points, pts), f1(found, pts)
                        fixes["log"][j] = corrections(found, pts)
                        for rule, found_points in rules.items():
                            f1s[rule][j] = f1(found_points, pts)
                            fixes[rule][j] = corrections(found_points, pts)
                for m in per:
                    per[m][unit][j] = rows[m]
        log(f"fold {fold_info[-1]}: " + "; ".join(
            f"{ids[j][-7:]} true {len(points[j])} point {per['point']['whole'][j][0]:.0f} "
            f"LoG {per['log']['whole'][j][0]}" for j in test_idx))
    done = [j for j in range(len(ids)) if per["point"]["whole"][j] is not None]
    truth = {"whole": [len(points[j]) for j in done],
             "quarters": [len(q) for j in done for _i, q in quarters(images[j], points[j])]}
    out = {"folds": fold_info, "truth": truth, "target": params.target, "seconds": time.perf_counter() - started,
           "images": done, "f1": {m: float(np.mean([v[j] for j in done]))
                                  for m, v in f1s.items()},
           "corrections": {m: float(np.mean([v[j] for j in done])) for m, v in fixes.items()}}
    for m in per:
        out[m] = {}
        for unit in ("whole", "quarters"):
            counts = [c for j in done for c in per[m][unit][j]]
            out[m][unit] = {**summary(counts, truth[unit]), "counts": counts}
    err = {m: np.abs(np.subtract(out[m]["whole"]["counts"], truth["whole"]))
           for m in ("point", "log")}
    out["point_better"] = int((err["point"] < err["log"]).sum())
    log(f"CV point {out['point']['whole']['mae']:.1f} ± {out['point']['whole']['sd']:.1f} "
        f"({out['point']['quarters']['mae']:.1f} per 600²), raw "
        f"{out['raw']['whole']['mae']:.1f}, LoG {out['log']['whole']['mae']:.1f} ± "
        f"{out['log']['whole']['sd']:.1f} ({out['log']['quarters']['mae']:.1f} per 600²), "
        f"point better on {out['point_better']}/{len(done)}; point F1 {out['f1']['point']:.3f} "
        f"(threshold {out['f1']['threshold']:.3f}, the count's highest peaks "
        f"{out['f1']['count']:.3f}, topped up {out['f1']['topped']:.3f}), LoG "
        f"{out['f1']['log']:.3f}; corrections per image " + ", ".join(
            f"{m} {v:.1f}" for m, v in out["corrections"].items()))
    return out


def cv_lines(cv: dict, ids, k: int) -> list[str]:
    n, nq = len(cv["truth"]["whole"]), len(cv["truth"]["quarters"])
    lines = [f"Leave-patients-out cross-validation, {k} folds (patients dealt in sorted order; "
             "per fold the point model trained and LoG tuned on the other folds' images "
             f"only, same settings as (a)); "
             + ("every image a test image once. " if len(cv["folds"]) == k else
                f"only fold(s) {', '.join(str(f['fold']) for f in cv['folds'])} run. ")
             + f"{cv['seconds'] / 60:.1f} min.", "",
             "| fold | test images | count factor | peak threshold | checkpoint step | "
             "LoG sigma/threshold | training s |", "|---|---|---|---|---|---|---|"]
    for f in cv["folds"]:
        lines.append(f"| {f['fold']} | {', '.join(f['test'])} | {f['factor']:.4f} | "
                     f"{f['threshold']} | {f['selected_step'] or 'last'} | {f['log']} | "
                     f"{f['seconds']} |")
    lines += ["", "| method | images | MAE ± sd | relative error | bias |",
              "|---|---|---|---|---|"]
    if cv.get("target", "density") == "centres":
        labels = {"point": "(a) point model (centre heat-map), peaks above the calibrated "
                           "threshold"}
    else:
        labels = {"point": "(a) point model, density integral x count factor",
                  "raw": "(a) point model, density integral (factor 1)",
                  "peaks": "(a) point model, number of peaks above the calibrated threshold",
                  "topped": "(a) point model, points found, topped up to the count"}
    labels["log"] = "(c) LoG blobs, tuned on the fold's training images"
    for m, label in labels.items():
        for unit, name in (("whole", f"{n} x 1200²"), ("quarters", f"{nq} x 600²")):
            r = cv[m][unit]
            lines.append(f"| {label} | {name} | {r['mae']:.1f} ± {r['sd']:.1f} | "
                         f"{100 * r['rel']:.1f}% | {r['bias']:+.1f} |")
    lines += ["", f"Point F1 (10 px), mean over the {n} images: point model "
              f"{cv['f1']['point']:.3f} (by rule: the peaks above the calibrated threshold "
              f"{cv['f1']['threshold']:.3f}; the count's round(count) highest peaks "
              f"{cv['f1']['count']:.3f}; the threshold's peaks topped up to the count "
              f"{cv['f1']['topped']:.3f}), "
              f"LoG {cv['f1']['log']:.3f}. Corrections per image (points to remove + cells to "
              "add, 10 px): " + ", ".join(f"{m} {v:.1f}" for m, v in cv["corrections"].items())
              + ". The point model's count "
              f"error is smaller than LoG's on {cv['point_better']} of {n} images.", "",
              "Per image, true / (a) / (c): " + "; ".join(
                  f"{i.replace('BM_GRAZ_HE_', '')} {t} / {a:.0f} / {c}" for i, t, a, c in zip(
                      [ids[j] for j in cv["images"]], cv["truth"]["whole"],
                      cv["point"]["whole"]["counts"],
                      cv["log"]["whole"]["counts"])) + "."]
    return lines


def fmt(r: dict, interval: bool = False) -> str:
    cells = f"{r['mae']:.1f} ± {r['sd']:.1f} | {100 * r['rel']:.1f}% | {r['bias']:+.1f} | " \
        f"{r['f1']:.3f}"
    if interval:
        cells += f" | {r['coverage'] * len(r['truth']):.0f}/{len(r['truth'])} " \
            f"(mean width {r['width']:.1f})"
    else:
        cells += " | –"
    return cells


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--sigma", type=float, default=4.0)
    ap.add_argument("--target", choices=("density", "centres"), default=CountingParams.target,
                    help="what the point model regresses (CountingParams.target)")
    ap.add_argument("--scale", type=float, default=None,
                    help="the target's multiplier (default: CountingParams' 100 for a "
                         "density, 1 for centres)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="share of the 256x256 training tiles held out to choose the count "
                         "factor and peak threshold (and the checkpoint, --select-every)")
    ap.add_argument("--select-every", type=int, default=0)
    ap.add_argument("--colour", type=float, default=0.0, help="per-channel colour jitter")
    ap.add_argument("--input-mapping", default=None,
                    help="the point model reads the image through this mapping, e.g. "
                         "nucleus-contrast-v1 (the haematoxylin channel LoG reads)")
    ap.add_argument("--count-weight", type=float, default=0.01)
    ap.add_argument("--mc", type=int, default=16)
    ap.add_argument("--curve", default="4,8,16,32,64",
                    help="tiles of 300x300 per learning-curve point (all 128 = full data)")
    ap.add_argument("--curve-steps", type=int, default=0, help="0: --steps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the machine is shared; 2 threads measured "
                         "10-25x slower under load)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=0,
                    help="also leave-patients-out cross-validation with this many folds")
    ap.add_argument("--only-folds", default=None,
                    help="with --folds: run just these folds (comma list, e.g. 2)")
    ap.add_argument("--folds-only", action="store_true",
                    help="the cross-validation only: prints, writes nothing")
    ap.add_argument("--quick", action="store_true", help="a few steps; prints, writes nothing")
    ap.add_argument("--no-builtin", action="store_true")
    ap.add_argument("--init", choices=("scratch", "builtin"), default="scratch",
                    help="builtin: start the point model from nuclei-v1's U-Net (its "
                         "architecture and grey input mapping; --width/--depth ignored)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.curve, args.mc = 10, "4", 4
    started = time.perf_counter()
    cpu_started = time.process_time()
    ids, images, points = load()
    train_ids, test_ids = ids[:N_TRAIN], ids[N_TRAIN:]
    train_images, train_points = images[:N_TRAIN], points[:N_TRAIN]
    test = list(zip(images[N_TRAIN:], points[N_TRAIN:]))
    if args.quick:
        test = [(img[:, :600, :600], pts[(pts[:, 0] < 600) & (pts[:, 1] < 600)])
                for img, pts in test[:1]]
    sets = {"whole": test, "quarters": [q for img, pts in test for q in quarters(img, pts)]}
    params = CountingParams(steps=args.steps, batch=args.batch, patch=args.patch,
                            sigma=args.sigma, width=args.width, depth=args.depth, lr=args.lr,
                            seed=args.seed, threads=args.threads, holdout=args.holdout,
                            select_every=args.select_every, colour_jitter=args.colour,
                            count_weight=args.count_weight, input_mapping=args.input_mapping,
                            target=args.target, scale=args.scale)
    log = print
    timings = {}
    init = None
    if args.init == "builtin":
        from models.builtin import load_builtin
        init = load_builtin()
    cv = None
    if args.folds:
        only = [int(f) for f in args.only_folds.split(",")] if args.only_folds else None
        cv = cross_validate(ids, images, points, params, args.folds, init, log, only)
        timings[f"cross-validation ({args.folds} folds)"] = cv["seconds"]
        if args.folds_only:
            print("\n".join(cv_lines(cv, ids, args.folds)))
            return

    t = time.perf_counter()
    log_params, _table = count_baseline.tune(train_images, train_points)
    timings["LoG grid search (8 training images)"] = time.perf_counter() - t
    log(f"LoG params {log_params}")
    log_result = evaluate_log(log_params, sets)
    log(f"LoG {log_result['whole']}")

    builtin_result = None
    if not args.no_builtin:
        t = time.perf_counter()
        builtin_result = evaluate_builtin(sets)
        timings["built-in model, test images"] = time.perf_counter() - t
        log(f"builtin {builtin_result['whole']}")

    t = time.perf_counter()
    model = train_counter(train_images, train_points, params=params, init=init)
    timings[f"point model training ({args.steps} steps)"] = time.perf_counter() - t
    log(f"point model {model.meta['training']} {model.meta['peaks']} "
        f"factor {model.meta['density'].get('count_factor')}")
    t = time.perf_counter()
    point_result = evaluate_point_model(model, sets, args.mc)
    timings["point model, test images"] = time.perf_counter() - t
    log(f"point {point_result['whole']}")

    # (a') as the app trains: a fifth of the annotated tiles held out, the 90% interval
    # calibrated on them (models.count_interval, each held-out tile a unit of its own)
    all_tiles = tiles(train_images, train_points, args.seed)
    n_held = max(1, len(all_tiles) // 5)
    held, kept = all_tiles[:n_held], all_tiles[n_held:]
    t = time.perf_counter()
    imgs, pts, regs = subset(train_images, kept)
    calibrated = train_counter(imgs, pts, regions=regs, params=params, init=init)
    calibrated.meta["interval"] = calibrate_interval(
        calibrated, [train_images[k] for k, _r, _p in held], [p for _k, _r, p in held],
        [r for _k, r, _p in held])
    timings["point model on 80% of the tiles, trained and calibrated"] = \
        time.perf_counter() - t
    log(f"interval {calibrated.meta['interval']}")
    calibrated_result = evaluate_point_model(calibrated, sets, args.mc)
    log(f"calibrated {calibrated_result['whole']}")

    curve = []
    curve_params = CountingParams(**{**params.as_dict(), "steps": args.curve_steps or args.steps})
    t = time.perf_counter()
    for n in [int(v) for v in args.curve.split(",") if v]:
        imgs, pts, regs = subset(train_images, all_tiles[:n])
        m = train_counter(imgs, pts, regions=regs, params=curve_params, init=init)
        r = evaluate_point_model(m, sets, 0)
        curve.append({"tiles": n, "clicks": int(sum(len(p) for p in pts)),
                      "whole": r["whole"]["mae"], "quarters": r["quarters"]["mae"],
                      "f1": r["whole"]["f1"]})
        log(f"curve {curve[-1]}")
    timings["learning curve"] = time.perf_counter() - t
    full_clicks = int(sum(len(p) for p in train_points))
    curve.append({"tiles": len(all_tiles), "clicks": full_clicks,
                  "whole": point_result["whole"]["mae"],
                  "quarters": point_result["quarters"]["mae"],
                  "f1": point_result["whole"]["f1"], "full": True})
    target = 1.1 * point_result["whole"]["mae"]
    reached = next((c for c in curve if c["whole"] <= target), None)

    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu_name = next(l.split(":", 1)[1].strip() for l in lscpu.splitlines()
                        if l.startswith("Model name"))
    except (OSError, StopIteration):
        cpu_name = "unknown"

    cal = calibrated.meta["interval"]
    centres = model.target == "centres"
    rows = [(f"(a) point model ({'centre heat-map' if centres else 'density'} U-Net, this "
             "run)", point_result, True),
            ("(a') point model on 80% of the tiles, interval calibrated on the other 20%",
             calibrated_result, True)]
    if builtin_result:
        rows.append(("(b) built-in nuclei-v1, instance count (zero-shot)", builtin_result, False))
    rows.append(("(c) LoG blobs, tuned on the training images", log_result, False))
    arch = model.meta["architecture"]
    start = ("started from nuclei-v1's U-Net, its grey input mapping (1 channel)"
             if init is not None else
             f"from scratch, 1 input channel (the image through the {args.input_mapping!r} "
             "mapping)" if args.input_mapping else
             "from scratch, 3 input channels (RGB, percentile-normalised)")
    body = [
        f"CPU (`lscpu | grep 'Model name'`): {cpu_name}; torch threads {args.threads}; "
        f"training engine {model.meta['training_engine']}.  ",
        f"Wall time of the whole run {wall / 60:.1f} min ({cpu / 60:.1f} min of CPU in this "
        "process, on a machine shared with other work).",
        "",
        f"Split (rule: ids sorted, first {N_TRAIN} train, last {len(ids) - N_TRAIN} test; no "
        f"patient in both): train {', '.join(i.replace('BM_GRAZ_HE_', '') for i in train_ids)}"
        f" ({full_clicks} clicks); test "
        f"{', '.join(i.replace('BM_GRAZ_HE_', '') for i in test_ids)} "
        f"({sum(len(p) for _, p in test)} cells). Published works used random splits of "
        "600x600 crops (Count-ception's MBM set is built from these images with modified "
        "annotations), so the split and the labels do not match theirs; the quarter rows "
        "count each 600x600 quarter of the test images as an image, their unit.",
        "",
        f"Point model: U-Net width {arch['width']}, depth {arch['depth']}, {start}, "
        + (f"centre heat-map sigma {args.sigma} px (count = its peaks above the "
           "threshold), " if centres else f"Gaussian density sigma {args.sigma} px, ")
        + f"{args.steps} steps of {args.batch} patches of {args.patch} px "
        f"({model.meta['training']['seconds']:.0f} s, "
        f"{model.meta['training']['patches_per_s']:.1f} patches/s); augmentation: flips, "
        f"90° turns, intensity gain/offset/gamma"
        f"{f', per-channel colour jitter ±{args.colour}' if args.colour else ''}; "
        f"peak threshold {model.meta['peaks']['threshold']} x one cell's peak and count "
        f"factor {model.meta['density'].get('count_factor')} chosen on the "
        + (f"{model.meta['training']['holdout']['tiles']} held-out 256² tiles of the "
           f"training images (checkpoint step {model.meta['training']['selected_step']})"
           if model.meta["training"].get("holdout") else "training images") + "; "
        f"interval: 5-95% of {args.mc} MC-dropout samples. (a') the same model trained on "
        f"{len(kept)} of the {len(all_tiles)} 300x300 training tiles (each an annotated "
        f"region), its 90% interval calibrated on the other {len(held)} (split conformal on "
        f"the relative count error, models/count_interval.py): count {100 * cal['low']:+.1f}% "
        f"to {100 * cal['high']:+.1f}% ({cal['units']} units, "
        f"{'guaranteed' if cal['guaranteed'] else 'nominal'}), or the MC-dropout range where "
        "wider.",
        "",
        "| method | images | MAE ± sd | relative error | bias | point F1 (10 px) | "
        "true count in interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r, interval in rows:
        for unit, name in (("whole", f"{len(sets['whole'])} x 1200²"),
                           ("quarters", f"{len(sets['quarters'])} x 600²")):
            body.append(f"| {label} | {name} | {fmt(r[unit], interval)} |")
    body += [] if centres else ["", "Counted as the number of peaks above the calibrated "
             "threshold instead of the density's integral: "
             + "; ".join(f"{label.split(' ')[0]} MAE {r['whole']['peaks']['mae']:.1f} ± "
                         f"{r['whole']['peaks']['sd']:.1f} per 1200², "
                         f"{r['quarters']['peaks']['mae']:.1f} ± "
                         f"{r['quarters']['peaks']['sd']:.1f} per 600²"
                         for label, r, interval in rows if interval) + "."]
    body += ["", "Per test image (1200²), true / (a) / (b) / (c): " + "; ".join(
        f"{t} / {a:.0f} / {b} / {c}" for t, a, b, c in zip(
            point_result["whole"]["truth"], point_result["whole"]["counts"],
            builtin_result["whole"]["counts"] if builtin_result else ["–"] * len(test),
            log_result["whole"]["counts"])) + ".",
        f"LoG parameters chosen: sigma {log_params.min_sigma}-{log_params.max_sigma} px, "
        f"threshold {log_params.threshold}.", ""]
    if len(curve) == 1:
        body += ["Learning curve: not run in this run (`--curve ''`).", ""]
    else:
        body += ["Learning curve in clicks (the point model trained on the first n 300x300 "
                 "tiles of the shuffled training tiles, each an annotated region; same steps; "
                 "MAE on the test images):", "",
                 "| tiles | clicks | MAE 1200² | MAE 600² | point F1 |", "|---|---|---|---|---|"]
        for c in curve:
            body.append(f"| {c['tiles']}{' (all)' if c.get('full') else ''} | {c['clicks']} | "
                        f"{c['whole']:.1f} | {c['quarters']:.1f} | {c['f1']:.3f} |")
        body += ["", (f"Within 10% of the full-data MAE ({target:.1f} or less per 1200² "
                      f"image): first reached at {reached['clicks']} clicks "
                      f"({reached['tiles']} tiles)." if reached else
                      "Within 10% of the full-data MAE: not reached."), ""]
    if cv is not None:
        body += cv_lines(cv, ids, args.folds) + [""]
    body += ["Time: " + "; ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + "."]
    text = "\n".join(body)
    if args.quick:
        print(text)
        return
    write_section("counting", "Counting from points (issue 23)", text)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
