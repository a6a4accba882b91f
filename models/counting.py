"""Counting from points: a U-Net that learns where the cells are from clicks alone, counts
new images, finds the cells as points, and says how sure it is.

Method. The project's U-Net (`models.unet.UNet` with one output channel; a ReLU output, so
the background can be exactly 0) regresses one of two targets (`CountingParams.target`) with
a mean squared error over the annotated region only: with a region mask, pixels outside it
carry no loss, so cells nobody clicked there are not taught as "no cell".
- "centres" (the default since 2026-12-01, as detection-based counters do): a heat-map of
  height 1 at each click, falling off as a Gaussian of std `sigma` px with the distance to
  the nearest click (`models.density.centre_map`), so two touching cells stay two peaks.
  The cells of an image are the map's local maxima (smoothed a little, `peak_map`; at least
  2 sigma apart) above the peak threshold (`models.density.find_peaks`): they are both the
  points and the count. In leave-patients-out cross-validation on bone-marrow smears this
  counted closer and found far better points than the density (docs/benchmarks.md).
- "density" (Gaussian density regression, as FCRN / Lempitsky & Zisserman): each click a
  Gaussian of mass 1 (`models.density.density_map`, times `scale` to keep the numbers near
  1), plus a small penalty on each patch's count error. The count is the integral of the
  predicted density times `count_factor`; the points are the density's local maxima: as
  many of the highest as the count, rounded half up (`points="count"`,
  `models.density.strongest_peaks`), or (models saved before that rule,
  `points="threshold"`) all above the threshold.
The threshold (and a density's factor) are fitted after training on the training regions
(`calibrate`): the threshold so that the number of peaks matches the clicks there, the
factor so that the integral does (a short training leaves it biased). For a density the
threshold did not carry over to new patients for a model reading the nuclear stain (it found
a third of the cells), which is why its count chooses the points; there it still sets the
points' confidence.
With `holdout` > 0 a share of the annotated `holdout_tile` px tiles is kept out of training
and both are fitted on those tiles instead (a net fits its own training clicks too well for
the factor fitted there to carry over); with `select_every` the held-out tiles are also
counted during training and the weights that count them best are kept
(meta["training"]["selected_step"], ["holdout"]).
Uncertainty: Monte Carlo dropout of the U-Net's stochastic output layer (the deterministic
trunk runs once per tile, the output layer `mc_samples` times, as `models.uncertainty`
does); the interval is the 5-95% range of the sampled counts, and a point's confidence is
the share of samples whose map at it still clears the peak threshold (for a heat-map the
sampled counts are the peaks of each sampled map). That interval is
far too narrow on its own, so a model calibrated on held-out clicks
(`models.count_interval`, meta["interval"]: a split conformal interval of the relative count
error) widens it to the calibrated one.

Same conventions as the segmentation models: per-channel percentile normalisation
(`models.data.normalise`), an optional input mapping (`models.inference.INPUT_MAPPINGS`,
e.g. "nuclei-v1" to start from the built-in nuclei model's trunk), CUDA when present and bf16
autocast with channels_last on CPUs with native bf16 (`models.device.select_runtime`),
tiled inference with blending (`models.tiling.tiled_apply`), seeded and deterministic on
the CPU, cancellable between steps (`models.cancel.Cancelled`).

Public API (arrays: images (C, Y, X) or (Y, X) raw, as `models.training.train_model` takes
them; points (N, 2) float (y, x) pixel coordinates; regions (Y, X) bool, True = annotated):

    params = CountingParams(steps=400, sigma=3.0)            # dataclass, see its fields
    model = train_counter(images, points, regions=None, params=params,
                          progress=None, cancel=None, init=None)   # -> CountingModel
    result = count_image(model, image, mc_samples=16)        # -> CountResult
    result.count, result.low, result.high                    # float; interval 5-95 %
    result.points, result.confidence                         # (N, 2) int (y, x); (N,)
    sha = save_counter(model, "model.cellloop")              # atomic; returns sha256
    model = load_counter("model.cellloop", expected_sha256=sha)   # or bytes, or an export:
    model = load_counter("model.onnx")                       # .pt / .onnx, see below
    counter_to_bytes(model) / counter_from_bytes(data)       # for a blob store
    is_counting_model(data_or_path)                          # True for a counting model file

`CountResult.as_dict()` gives plain data (count, low, high, std, points, confidence) for
counts.json; `CountingModel.density(image)` the (Y, X) density map for overlays.
An image of pure background (no cell at all) is percentile-normalised like any other, which
stretches its noise: such an image can count far above 0 (seen on synthetic noise).

`progress(dict)` is called after every step with {"phase": "train", "step", "steps",
"loss", "seconds"} and during the peak calibration with {"phase": "calibrate", "done",
"total"}; `cancel()` returning True between steps raises `Cancelled`.

Persistence: the same torch file layout as `models.persist` (tensors and plain data only,
`weights_only=True`), but with its own format marker `FORMAT` and `meta["kind"] ==
"counting"`, so a counting model is never loaded as a segmentation model
(`models.persist.load_model` refuses it as "not a CellLoop model file") nor the reverse.
`models.counting_export` writes a counting model as TorchScript (.pt) or ONNX (.onnx): the
network in eval mode with the output activation and / scale, so it outputs the density, plus
a JSON model card (count factor, peak rule, normalisation) embedded and beside the file.
`load_counter` and `is_counting_model` take those files too; the loaded model's module is the
exported network (`CountingModel.exported`), which has no dropout: `count_image` counts with
it as with mc_samples=0 (interval = the calibrated one when the card has it, else the
count; confidence from the peak heights), and it cannot be saved as .cellloop or trained
further.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import math
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from models.cancel import Cancelled
from models.count_interval import calibrated_bounds
from models.data import normalise
from models.density import as_points, augment_stack, centre_map, crop, density_map, \
    find_peaks, peak_height, strongest_peaks
from models.device import Runtime, select_runtime, set_threads
from models.inference import input_mapping
from models.model import ModelFileError, ModelInputError
from models.tiling import tiled_apply
from models.unet import UNet

log = logging.getLogger(__name__)

KIND = "counting"
FORMAT = "cellloop-counting-model"
FORMAT_VERSION = 2                     # the newest this code reads; a density model is
                                       # still written as 1, a centre heat-map as 2, so a
                                       # CellLoop from before heat-maps refuses one instead
                                       # of reading it as a density
INTERVAL = (5.0, 95.0)                 # percentiles of the sampled counts
THRESHOLD_GRID = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6,
                  0.7)                 # x one cell's peak height
# A model trained on few clicks can predict flat plateaus, not peaks (seen: maxima at 0.09 of
# one cell's peak height, no peak above the grid's old lowest 0.1, point F1 0), so the grid
# goes low and peaks are looked for on the density smoothed by PEAK_SMOOTHING x sigma.
PEAK_SMOOTHING = 0.5
CALIBRATION_PIXELS = 6_000_000         # annotated pixels the peak threshold is chosen on
POINT_RULES = ("count", "threshold")   # CountingParams.points
TARGETS = ("density", "centres")       # CountingParams.target
SCALES = {"density": 100.0, "centres": 1.0}   # CountingParams.scale when None
OUTPUT_BIAS = 0.05                     # a new output layer's bias (density x scale)


class CountingError(ValueError):
    """Training cannot start (no points, shapes that do not fit); the message says why."""


@dataclass
class CountingParams:
    steps: int = 400                   # optimiser steps
    max_seconds: float | None = None   # stop training after this long (at least one step)
    batch: int = 8                     # patches per step
    patch: int = 128                   # patch side (px), a multiple of 2 ** depth
    sigma: float = 3.0                 # Gaussian std of one cell in the target (px)
    target: str = "centres"            # what the net regresses: "centres" (a heat-map of
                                       # height 1 at each click, `models.density.centre_map`;
                                       # count = its peaks above the calibrated threshold,
                                       # which are the points) or "density" (a Gaussian of
                                       # mass 1 per click; count = its integral x factor;
                                       # the default before 2026-12-01, docs/benchmarks.md)
    lr: float = 2e-3                   # AdamW, cosine decay to 0 over `steps`
    weight_decay: float = 1e-4
    seed: int = 0
    width: int = 16                    # U-Net (ignored with `init`: its architecture is kept)
    depth: int = 3
    dropout: float = 0.2               # head dropout; the last one is sampled for MC
    scale: float | None = None         # the network regresses the target x scale; None:
                                       # SCALES[target] (100 for a density, whose peaks are
                                       # ~0.01, so they come out near 1; 1 for centres)
    activation: str = "relu"           # on the output: "relu" (background exactly 0) or
                                       # "linear"
    point_fraction: float = 0.5        # share of patches centred near a clicked cell
    count_weight: float = 0.01         # + this x (patch count error, in cells) ** 2
    min_distance: int = 0              # between two peaks (px); 0: round(2 * sigma) (two
                                       # Gaussians closer than 2 sigma merge into one peak)
    peak_threshold: float = 0.3        # x one isolated cell's peak height, if not calibrated
    points: str = "count"              # which peaks are the cells: "count", the round(count)
                                       # highest (above the grid's lowest threshold), so the
                                       # points agree with the count; "threshold", every
                                       # peak above the calibrated threshold
    calibrate: bool = True             # choose the peak threshold and the count factor on
                                       # the training regions (`calibrate`)
    colour_jitter: float = 0.0         # per-channel gain/offset jitter (augment_stack)
    holdout: float = 0.0               # share of the annotated tiles (holdout_tile px square)
                                       # kept out of training: the count factor and the peak
                                       # threshold are chosen on them, not on the training
                                       # regions (which a trained net fits too well)
    holdout_tile: int = 256
    select_every: int = 0              # with a holdout: count the held-out tiles every this
                                       # many steps and keep the weights that count them best
    normalisation: tuple = (1.0, 99.8)
    input_mapping: str | None = None   # e.g. "nuclei-v1" (inherited from `init`)
    precision: str = "auto"            # "auto", "fp32" or "bf16" (models.device)
    device: str | None = None          # None: CUDA when present, else CPU
    threads: int = 0
    deterministic: bool = True

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def target_scale(self) -> float:
        """`scale`, or the target's default (SCALES) when it is None."""
        return self.scale if self.scale is not None else SCALES[self.target]


@dataclass
class CountResult:
    count: float                       # integral of the predicted density x count
                                       # factor, or a heat-map's peaks above its threshold
    low: float                         # INTERVAL of the MC-dropout sampled counts, or
                                       # the calibrated interval where it is wider
    high: float
    points: np.ndarray                 # (N, 2) int (y, x) peaks
    confidence: np.ndarray             # (N,) in 0..1
    std: float = 0.0                   # std of the sampled counts
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))   # (T,) sampled counts
    density: np.ndarray | None = None  # (Y, X) cells per pixel, if asked

    @property
    def n_points(self) -> int:
        return int(len(self.points))

    def as_dict(self) -> dict:
        """Plain data (JSON-ready): count, low, high, std, points [[y, x], ...], confidence."""
        return {"count": round(float(self.count), 3), "low": round(float(self.low), 3),
                "high": round(float(self.high), 3), "std": round(float(self.std), 3),
                "points": self.points.astype(int).tolist(),
                "confidence": [round(float(c), 3) for c in self.confidence]}


class CountingModel:
    """A U-Net with one output channel (density x scale) and what it takes to use it."""

    def __init__(self, module, meta: dict):
        self.module = module          # a UNet; or an export's network (`exported`)
        self.meta = meta
        self._runtime: Runtime | None = None

    kind = KIND

    @property
    def in_channels(self) -> int:
        return int(self.meta["architecture"]["in_channels"])

    @property
    def multiple(self) -> int:
        return 2 ** int(self.meta["architecture"].get("depth", 4))

    @property
    def sigma(self) -> float:
        return float(self.meta["density"]["sigma"])

    @property
    def scale(self) -> float:
        return float(self.meta["density"]["scale"])

    @property
    def count_factor(self) -> float:
        return float(self.meta["density"].get("count_factor", 1.0))

    @property
    def target(self) -> str:
        """"density" (count = integral x count_factor) or "centres" (count = peaks)."""
        return self._choice("density", "target", "density", TARGETS)

    @property
    def unit_peak(self) -> float:
        """The height of one isolated cell's peak in the net's output (/ scale): a
        Gaussian of mass 1 for a density, 1 for a centre heat-map."""
        return 1.0 if self.target == "centres" else peak_height(self.sigma)

    @property
    def threshold(self) -> float:
        """Absolute peak threshold in output units (cells per pixel for a density)."""
        return float(self.meta["peaks"]["threshold"]) * self.unit_peak

    @property
    def point_rule(self) -> str:
        """"count" (the count's highest peaks) or "threshold" (models saved before the rule
        existed: every peak above the calibrated threshold)."""
        return self._choice("peaks", "select", "threshold", POINT_RULES)

    def _choice(self, section: str, key: str, default: str, allowed: tuple) -> str:
        """meta[section][key] (default when missing), refused unless one of `allowed`."""
        value = str(self.meta[section].get(key, default))
        if value not in allowed:
            raise ModelFileError(f"unknown {section}.{key}={value!r} (expected one of "
                                 f"{', '.join(allowed)})")
        return value

    @property
    def floor(self) -> float:
        """The lowest peak (cells per pixel) the "count" rule takes as a cell."""
        return float(self.meta["peaks"].get("floor", min(THRESHOLD_GRID))) * self.unit_peak

    @property
    def min_distance(self) -> int:
        return int(self.meta["peaks"]["min_distance"])

    @property
    def peak_sigma(self) -> float:
        """Std (px) of the Gaussian the density is smoothed by before peaks are found."""
        return peak_smoothing(self.sigma)

    @property
    def exported(self) -> bool:
        """Loaded from a TorchScript or ONNX export (`models.counting_export`): the module
        maps an image to the density directly and has no dropout, so no MC samples."""
        return not isinstance(self.module, UNet)

    @property
    def ran_on(self) -> str | None:
        """The name of the runtime the model has run on (`Runtime.name`), None before it
        ran: reading it chooses nothing and builds no engine."""
        return self._runtime.name if self._runtime is not None else None

    def runtime(self, prefer: str = "auto", device: str | None = None) -> Runtime:
        if self._runtime is None or prefer != "auto" or device is not None:
            if not isinstance(self.module, torch.nn.Module):    # an ONNX Runtime session
                self._runtime = Runtime(torch.device("cpu"), None, False, "onnxruntime")
                return self._runtime
            self._runtime = select_runtime(prefer, device)
            self.module.to(self._runtime.device)
            self.module.to(memory_format=torch.channels_last if self._runtime.channels_last
                           else torch.contiguous_format)
            self.module.eval()
        return self._runtime

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """(C, Y, X) or (Y, X) raw image -> normalised (C, Y, X) float32 as the net reads it
        (through the input mapping, if the model has one)."""
        return _prepare(image, self.meta, self.in_channels)

    def count(self, image: np.ndarray, **options) -> "CountResult":
        """`count_image(self, image, **options)`."""
        return count_image(self, image, **options)

    def density(self, image: np.ndarray, tile: int = 512, overlap: int = 64) -> np.ndarray:
        """(Y, X) predicted density (cells per pixel; dropout off)."""
        return count_image(self, image, mc_samples=0, tile=tile, overlap=overlap,
                           keep_density=True).density


def _prepare(image, meta: dict, in_channels: int | None) -> np.ndarray:
    image = np.asarray(image)
    mapping = input_mapping(meta)
    if mapping is not None:
        image = mapping(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ModelInputError(f"expected a (C, Y, X) image, got shape {image.shape}")
    if in_channels is not None and image.shape[0] != in_channels:
        raise ModelInputError(f"this counting model takes {in_channels} channel(s); the image "
                              f"has {image.shape[0]}")
    norm = meta.get("normalisation", {})
    return normalise(image, norm.get("low", 1.0), norm.get("high", 99.8))


# ------------------------------------------------------------------ training
@dataclass
class _Sample:
    image: np.ndarray          # (C, Y, X) normalised
    target: np.ndarray         # (Y, X) density x scale
    region: np.ndarray | None  # (Y, X) bool, None = whole image annotated
    points: np.ndarray         # (M, 2) int (y, x) clicked points inside the region
    weight: float              # annotated pixels (patch draw probability)


class _Sampler:
    """Patches from annotated regions: `point_fraction` of them centred near a clicked cell
    (jittered by up to a quarter patch), the rest anywhere in the region."""

    def __init__(self, samples: list[_Sample], patch: int, point_fraction: float,
                 rng: np.random.Generator, colour: float = 0.0):
        self.samples, self.patch, self.point_fraction, self.rng = \
            samples, patch, point_fraction, rng
        self.colour = colour
        weights = np.array([s.weight for s in samples], np.float64)
        self.p = weights / weights.sum()
        self.valid = [None if s.region is None else np.flatnonzero(s.region.ravel())
                      for s in samples]

    def _centre(self, k: int) -> tuple[int, int]:
        s = self.samples[k]
        h, w = s.target.shape
        if len(s.points) and self.rng.random() < self.point_fraction:
            y, x = s.points[self.rng.integers(len(s.points))]
            j = self.patch // 4
            return int(y + self.rng.integers(-j, j + 1)), int(x + self.rng.integers(-j, j + 1))
        if self.valid[k] is None:
            return int(self.rng.integers(h)), int(self.rng.integers(w))
        flat = int(self.valid[k][self.rng.integers(len(self.valid[k]))])
        return flat // w, flat % w

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, P, P) images and (N, 2, P, P) targets: density x scale, region mask."""
        images, targets = [], []
        for _ in range(n):
            k = int(self.rng.choice(len(self.samples), p=self.p))
            s = self.samples[k]
            cy, cx = self._centre(k)
            img = crop(s.image, cy, cx, self.patch)
            mask = np.ones(s.target.shape, np.float32) if s.region is None else \
                s.region.astype(np.float32)
            planes = np.stack([crop(s.target, cy, cx, self.patch),
                               crop(mask, cy, cx, self.patch)])
            img, planes = augment_stack(img, planes, self.rng, self.colour)
            images.append(img)
            targets.append(planes)
        return np.stack(images), np.stack(targets)


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                scale: float = 1.0, count_weight: float = 0.0) -> torch.Tensor:
    """Mean squared error over the annotated pixels only ((N, 1, P, P) each; mask 0/1),
    plus `count_weight` x the mean squared error of each patch's annotated count (in cells:
    sums / `scale`), which keeps the integral unbiased where a small offset over many
    background pixels would add up. Pixels outside the region contribute nothing to either
    term and get no gradient."""
    err = (pred - target) ** 2 * mask
    loss = err.sum() / mask.sum().clamp_min(1.0)
    if count_weight > 0:
        diff = ((pred - target) * mask).sum(dim=(1, 2, 3)) / scale
        loss = loss + count_weight * (diff ** 2).mean()
    return loss


def _samples(images, points, regions, p: CountingParams, mapping_meta: dict) -> list[_Sample]:
    out = []
    for k, (img, pts) in enumerate(zip(images, points)):
        x = _prepare(img, mapping_meta, None)
        h, w = x.shape[1:]
        region = None if regions is None or regions[k] is None else \
            np.asarray(regions[k], bool)
        if region is not None and region.shape != (h, w):
            raise CountingError(f"image {k}: shape {(h, w)} but region {region.shape}")
        if region is not None and region.all():
            region = None
        pts = as_points(pts)
        target = (centre_map if p.target == "centres" else density_map)(
            pts, (h, w), p.sigma) * p.target_scale
        rc = np.floor(pts + 0.5).astype(np.int64).reshape(-1, 2)
        rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)]
        if region is not None:
            rc = rc[region[rc[:, 0], rc[:, 1]]]
        weight = float(h * w if region is None else region.sum())
        out.append(_Sample(x, target, region, rc, weight))
    return out


HOLDOUT_MARGIN = 64                    # context (px) around a held-out tile when counted


def _hold_out(samples: list[_Sample], p: CountingParams, rng: np.random.Generator
              ) -> tuple[list[_Sample], list[_Sample]]:
    """Split the annotated area into training samples and held-out tiles: the
    `holdout_tile` px squares of the images' grids that are mostly (>= half) annotated, a
    `holdout` share of them drawn at random. A held-out tile becomes a sample of its own
    (the image cropped with HOLDOUT_MARGIN px of context, the tile as its region, the clicks
    in it); its pixels leave the training regions. No holdout (the samples unchanged, no
    tiles) when fewer than 2 tiles would be held out or none would stay for training."""
    t = int(p.holdout_tile)
    candidates = []
    for k, s in enumerate(samples):
        h, w = s.target.shape
        for y0 in range(0, h - t + 1, t):
            for x0 in range(0, w - t + 1, t):
                annotated = t * t if s.region is None else \
                    int(s.region[y0:y0 + t, x0:x0 + t].sum())
                if annotated >= t * t // 2:
                    candidates.append((k, y0, x0))
    n = int(round(p.holdout * len(candidates)))
    if n < 2 or n >= len(candidates):
        return samples, []
    held = [candidates[i] for i in sorted(rng.choice(len(candidates), n, replace=False))]
    removed = [np.zeros(s.target.shape, bool) for s in samples]
    tiles = []
    m = HOLDOUT_MARGIN
    for k, y0, x0 in held:
        s = samples[k]
        h, w = s.target.shape
        removed[k][y0:y0 + t, x0:x0 + t] = True
        ya, xa, yb, xb = max(0, y0 - m), max(0, x0 - m), min(h, y0 + t + m), min(w, x0 + t + m)
        region = np.zeros((yb - ya, xb - xa), bool)
        region[y0 - ya:y0 - ya + t, x0 - xa:x0 - xa + t] = True
        if s.region is not None:
            region &= s.region[ya:yb, xa:xb]
        pts = s.points - [ya, xa]
        pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < yb - ya) & (pts[:, 1] >= 0) &
                  (pts[:, 1] < xb - xa)]
        pts = pts[region[pts[:, 0], pts[:, 1]]] if len(pts) else pts
        tiles.append(_Sample(np.ascontiguousarray(s.image[:, ya:yb, xa:xb]),
                             s.target[ya:yb, xa:xb], region, pts, float(region.sum())))
    kept = []
    for s, out in zip(samples, removed):
        if not out.any():
            kept.append(s)
            continue
        region = (np.ones(out.shape, bool) if s.region is None else s.region) & ~out
        pts = s.points[region[s.points[:, 0], s.points[:, 1]]] if len(s.points) else s.points
        if region.any():
            kept.append(_Sample(s.image, s.target, region, pts, float(region.sum())))
    return kept, tiles


def _count_error(model: "CountingModel", tiles: list[_Sample]) -> tuple[float, float]:
    """(mean absolute count error over the tiles, factor) with the factor (clicks / integral,
    clipped as `calibrate` clips it) fitted on the same tiles: how well the density ranks
    and scales the tiles' counts, whatever its overall bias."""
    integrals = np.array([float(_run(model, s.image, 0, 0, 512, 64)[0][s.region].sum())
                          for s in tiles])
    clicks = np.array([len(s.points) for s in tiles], np.float64)
    factor = float(np.clip(clicks.sum() / integrals.sum(), 0.5, 2.0)) \
        if integrals.sum() > 0 else 1.0
    return float(np.abs(factor * integrals - clicks).mean()), factor


def _initial_net(p: CountingParams, in_channels: int, init) -> UNet:
    """A U-Net with one output channel: new, or `init`'s weights. A new output layer starts
    at zero weights and a small positive bias (OUTPUT_BIAS), so the ReLU output begins
    alive everywhere whatever the scale of the features below it (from a pretrained trunk a
    random output layer started far below zero, and 400 steps did not bring it back)."""
    module = None if init is None else getattr(init, "module", None)
    if init is not None and not isinstance(module, UNet):
        raise CountingError("the model to start from has no CellLoop U-Net weights")
    if module is None:
        net = UNet(in_channels, 1, p.width, p.depth, p.dropout)
    else:
        arch = {**module.config, "n_classes": 1}
        if arch["in_channels"] != in_channels:
            raise CountingError(f"the model to start from takes {arch['in_channels']} "
                                f"channel(s), the images have {in_channels}")
        net = UNet(**arch)
        if getattr(init, "kind", None) == KIND and init.target == p.target:
            net.load_state_dict(copy.deepcopy(module.state_dict()))
            return net
        state = {k: v for k, v in copy.deepcopy(module.state_dict()).items()
                 if not k.startswith("head.out.")}
        net.load_state_dict(state, strict=False)
    with torch.no_grad():
        net.head.out.weight.zero_()
        net.head.out.bias.fill_(OUTPUT_BIAS)
    return net


def train_counter(images: list[np.ndarray], points: list, regions: list | None = None,
                  params: CountingParams | None = None,
                  progress: Callable[[dict], None] | None = None,
                  cancel: Callable[[], bool] | None = None,
                  init=None) -> CountingModel:
    """Train a counting model from point annotations.

    images: (C, Y, X) or (Y, X) raw arrays; points: one (N, 2) (y, x) array per image (clicks;
    an image may have none, e.g. an annotated empty region); regions: None, or one (Y, X)
    bool mask or None per image (True = annotated; None = the whole image). The loss is
    computed inside the regions only. `init`: a segmentation or counting model whose U-Net
    (and input mapping) to start from; its output layer is replaced unless it is a counting
    model with the same `target`. Returns a `CountingModel` whose meta holds the params, the loss curve and the
    training time."""
    p = params or CountingParams()
    if p.points not in POINT_RULES:
        raise CountingError(f"points must be one of {', '.join(POINT_RULES)}, not {p.points!r}")
    if p.target not in TARGETS:
        raise CountingError(f"target must be one of {', '.join(TARGETS)}, not {p.target!r}")
    if p.target == "centres" and p.select_every and p.holdout > 0:
        raise CountingError("select_every counts held-out tiles by the density's integral; "
                            "it needs target 'density'")
    centres = p.target == "centres"
    if p.scale is None:
        p = dataclasses.replace(p, scale=p.target_scale)
    if centres:        # a heat-map's cells are its peaks above the threshold, and its loss has
        #                no count term: the meta records the settings that were used
        p = dataclasses.replace(p, points="threshold", count_weight=0.0)
    if not len(images):
        raise CountingError("There are no point-annotated images to train on.")
    if len(points) != len(images) or (regions is not None and len(regions) != len(images)):
        raise CountingError("images, points and regions differ in number")
    mapping_name = (getattr(init, "meta", {}) or {}).get("input_mapping") or p.input_mapping
    base_meta = {"normalisation": {"kind": "percentile", "low": p.normalisation[0],
                                   "high": p.normalisation[1]}}
    if mapping_name:
        base_meta["input_mapping"] = mapping_name
    set_threads(p.threads)
    torch.manual_seed(p.seed)
    rng = np.random.default_rng(p.seed)
    samples = _samples(images, points, regions, p, base_meta)
    in_channels = samples[0].image.shape[0]
    if any(s.image.shape[0] != in_channels for s in samples):
        raise CountingError("all images must have the same number of channels")
    if sum(s.weight for s in samples) == 0:
        raise CountingError("No annotated pixels to train on (every region is empty).")
    held: list[_Sample] = []
    if p.holdout > 0:
        samples, held = _hold_out(samples, p, rng)
        if held and not sum(len(s.points) for s in held):
            samples, held = _samples(images, points, regions, p, base_meta), []
    net = _initial_net(p, in_channels, init)
    if p.patch % net.multiple:
        raise CountingError(f"patch {p.patch} is not a multiple of {net.multiple}")
    if p.precision not in ("auto", "fp32", "bf16"):
        raise CountingError(f"precision must be auto, fp32 or bf16, not {p.precision!r}")
    runtime = select_runtime(p.precision, p.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    if p.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    net.to(runtime.device)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)
    sampler = _Sampler(samples, p.patch, p.point_fraction, rng, p.colour_jitter)
    optimiser = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)

    def anneal(step: int) -> None:
        """Cosine decay to 0 over the steps, or over the time budget when it runs out
        first (a budget that stops training early still ends at a small learning rate)."""
        done = step / max(1, p.steps)
        if p.max_seconds:
            done = max(done, (time.perf_counter() - started) / p.max_seconds)
        for group in optimiser.param_groups:
            group["lr"] = p.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    losses: list[float] = []
    selection: list[dict] = []
    best = {"error": math.inf, "step": None, "state": None}
    density_meta = {"sigma": p.sigma, "scale": p.scale, "activation": p.activation,
                    "target": p.target}
    probe = CountingModel(net, {"architecture": net.config, "density": density_meta})
    probe._runtime = runtime

    def select(step: int) -> None:
        """Count the held-out tiles with the weights now; keep them if they count best."""
        net.eval()
        error, factor = _count_error(probe, held)
        net.train()
        selection.append({"step": step, "mae": round(error, 3), "factor": round(factor, 4)})
        if error < best["error"]:
            best.update(error=error, step=step, state=copy.deepcopy(net.state_dict()))
    started = time.perf_counter()
    net.train()
    try:
        for step in range(1, p.steps + 1):
            if cancel is not None and cancel():
                raise Cancelled()
            x, y = sampler.batch(p.batch)
            xt = torch.from_numpy(x).to(runtime.device)
            if runtime.channels_last:
                xt = xt.contiguous(memory_format=torch.channels_last)
            yt = torch.from_numpy(y).to(runtime.device)
            with runtime.autocast():
                pred = _activate(net(xt).float(), p.activation, training=True)
            loss = masked_loss(pred.float(), yt[:, :1], yt[:, 1:], p.scale, p.count_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            anneal(step)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress({"phase": "train", "step": step, "steps": p.steps, "loss": losses[-1],
                          "seconds": time.perf_counter() - started})
            out_of_time = p.max_seconds is not None and \
                time.perf_counter() - started >= p.max_seconds
            if held and p.select_every > 0 and (step % p.select_every == 0 or
                                                step == p.steps or out_of_time):
                select(step)
            if out_of_time:
                break                          # the time budget is spent
    finally:
        if p.deterministic and not deterministic_before:
            torch.use_deterministic_algorithms(False)
    seconds = time.perf_counter() - started
    if best["state"] is not None:              # the checkpoint that counted held-out best
        net.load_state_dict(best["state"])
    net.eval()
    done = len(losses)                         # fewer than p.steps when the budget ran out
    every = max(1, done // 50)
    meta = {**base_meta, "kind": KIND, "architecture": net.config,
            "density": dict(density_meta),
            "peaks": {"threshold": p.peak_threshold,
                      "select": p.points,
                      "floor": min(THRESHOLD_GRID),
                      "min_distance": p.min_distance or max(1, int(round(2 * p.sigma)))},
            "params": p.as_dict(), "training_engine": runtime.name,
            "training": {"steps": done, "steps_planned": p.steps,
                         "seconds": round(seconds, 2),
                         "patches_per_s": round(done * p.batch / max(seconds, 1e-9), 2),
                         "selected_step": best["step"],
                         "holdout": {"tiles": len(held),
                                     "clicks": int(sum(len(s.points) for s in held)),
                                     "selection": selection} if held else None,
                         "n_images": len(samples),
                         "n_points": int(sum(len(s.points) for s in samples)),
                         "annotated_pixels": int(sum(s.weight for s in samples)),
                         "initialised_from": (getattr(init, "meta", {}) or {}).get(
                             "name", "model" if init is not None else None)},
            "curve": [{"step": i + 1, "loss": round(float(np.mean(losses[i:i + every])), 5)}
                      for i in range(0, len(losses), every)]}
    model = CountingModel(net, json.loads(json.dumps(meta)))     # plain data, as when loaded
    model._runtime = runtime
    if p.calibrate:
        chosen = calibrate(model, held or samples, progress)
        if chosen is not None:
            model.meta["density"]["count_factor"] = chosen.pop("count_factor")
            model.meta["peaks"].update(chosen)
    log.info("counting model: %d steps in %.1f s, loss %s -> %s, peaks %s", done, seconds,
             losses[0] if losses else None, float(np.mean(losses[-every:])) if losses else None,
             model.meta["peaks"])
    return model


def calibrate(model: CountingModel, samples: list[_Sample],
              progress: Callable[[dict], None] | None = None) -> dict | None:
    """Fit the two read-outs to the clicks inside the training regions (at most
    CALIBRATION_PIXELS annotated pixels; None without clicks):
    - the peak threshold (a fraction of one cell's peak height, from THRESHOLD_GRID) whose
      number of peaks best matches the clicks (least total absolute difference);
    - `count_factor`, clicks / integral of the predicted density (clipped to 0.5..2): a
      short training leaves the integral biased (the ReLU output clips the Gaussians'
      tails; a longer one needs it less), and a count is the integral times this factor.
      A centre heat-map's count is its peaks above the threshold: its factor stays 1."""
    used, pixels = [], 0
    for s in samples:
        if used and pixels + s.weight > CALIBRATION_PIXELS:
            break
        used.append(s)
        pixels += s.weight
    clicks = sum(len(s.points) for s in used)
    if not clicks:
        return None
    height = model.unit_peak
    errors = np.zeros(len(THRESHOLD_GRID))
    integral = 0.0
    for k, s in enumerate(used):
        if progress is not None:
            progress({"phase": "calibrate", "done": k, "total": len(used)})
        density = _run(model, s.image, 0, 0, 512, 64)[0]
        integral += float(density.sum() if s.region is None else density[s.region].sum())
        _, values = find_peaks(peak_map(density, model.sigma), min(THRESHOLD_GRID) * height,
                               model.min_distance, s.region)
        for j, t in enumerate(THRESHOLD_GRID):
            errors[j] += abs(int((values >= t * height).sum()) - len(s.points))
    if progress is not None:
        progress({"phase": "calibrate", "done": len(used), "total": len(used)})
    best = int(np.argmin(errors))
    factor = float(np.clip(clicks / integral, 0.5, 2.0)) \
        if integral > 0 and model.target == "density" else 1.0
    return {"threshold": THRESHOLD_GRID[best], "count_factor": round(factor, 4),
            "calibration": {"n_images": len(used), "clicks": int(clicks),
                            "integral": round(integral, 3),
                            "peak_abs_error_per_image": round(float(errors[best]) / len(used),
                                                              3)}}


# ----------------------------------------------------------------- inference
def _activate(out: torch.Tensor, activation: str, training: bool = False) -> torch.Tensor:
    """The output activation. "relu" trains through a leaky ReLU (slope 0.01 below 0), so
    an output pushed below zero everywhere early on (most pixels are background) still has
    a gradient and cannot die; at inference it is a plain ReLU."""
    if activation == "relu":
        return F.leaky_relu(out, 0.01) if training else F.relu(out)
    if activation == "linear":
        return out
    raise CountingError(f"unknown output activation {activation!r}")


def _run(model: CountingModel, x: np.ndarray, mc_samples: int, seed: int | None,
         tile: int, overlap: int) -> np.ndarray:
    """(1 + T, Y, X) densities (cells per pixel) of a normalised (C, Y, X) image: the
    dropout-off prediction, then T samples of the stochastic output layer (an exported
    model: the prediction only)."""
    if model.exported:
        return _run_exported(model, x, tile, overlap)
    runtime = model.runtime()
    net = model.module
    state = {"seed": seed}
    activation = model.meta["density"].get("activation", "linear")

    def fn(t: torch.Tensor) -> torch.Tensor:
        t = _on(runtime, t)
        with torch.no_grad():
            with runtime.autocast():
                hidden = net.hidden(t)
            hidden = hidden.float().contiguous()
            out_layer = net.head.out
            plain = F.conv2d(hidden, out_layer.weight.float(), out_layer.bias.float())
            if mc_samples <= 0:
                return _activate(plain, activation) / model.scale
            if state["seed"] is not None:
                torch.manual_seed(state["seed"])
                state["seed"] += 1
            sampled = net.head.samples(hidden, mc_samples)[:, :, 0].transpose(0, 1)
            return _activate(torch.cat([plain, sampled.float()], dim=1), activation) \
                / model.scale

    return tiled_apply(x, fn, 1 + max(0, mc_samples), tile=tile, overlap=overlap,
                       batch=runtime.tile_batch, multiple=model.multiple)


def _on(runtime: Runtime, t: torch.Tensor) -> torch.Tensor:
    """A batch of tiles on the runtime's device, in its memory format."""
    t = t.to(runtime.device)
    return t.contiguous(memory_format=torch.channels_last) if runtime.channels_last else t


def _run_exported(model: CountingModel, x: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """(1, Y, X) density of an exported model, whose network gives it directly."""
    runtime = model.runtime()
    net = model.module

    def fn(t: torch.Tensor) -> torch.Tensor:
        t = _on(runtime, t)
        with torch.no_grad():
            with runtime.autocast():
                return net(t).float()

    return tiled_apply(x, fn, 1, tile=tile, overlap=overlap, batch=runtime.tile_batch,
                       multiple=model.multiple)


def points_for(count: float) -> int:
    """How many points the "count" rule takes for a count: rounded half up (2.5 -> 3)."""
    return max(0, int(np.floor(count + 0.5)))


def peak_smoothing(sigma: float) -> float:
    """The std (px) of the smoothing before peak finding: PEAK_SMOOTHING x sigma (>= 0.5)."""
    return max(0.5, PEAK_SMOOTHING * sigma)


def peak_map(density: np.ndarray, sigma: float) -> np.ndarray:
    """The density the peaks are looked for on: smoothed by PEAK_SMOOTHING x sigma, which
    gives a plateau one maximum."""
    from scipy import ndimage
    return ndimage.gaussian_filter(density, peak_smoothing(sigma), mode="reflect")


def count_image(model: CountingModel, image: np.ndarray, mc_samples: int = 16,
                seed: int | None = 0, tile: int = 512, overlap: int = 64,
                region: np.ndarray | None = None, keep_density: bool = False) -> CountResult:
    """Count the cells of one (C, Y, X) or (Y, X) image (a (1, C, Y, X) stack is taken as its
    plane). count: integral of the density (within `region` if given) times the count
    factor, or for a centre heat-map (`CountingModel.target` "centres") the number of its
    peaks above the threshold, which are then the points; low/high: the
    INTERVAL percentiles of `mc_samples` MC-dropout sampled counts (low = high = count
    when 0), widened to the model's calibrated interval when it has one
    (`models.count_interval`, meta["interval"]); points: peaks of the density, chosen by the
    model's `point_rule` (with "count": at most `points_for(count)`, fewer where fewer
    maxima clear the floor); confidence: per point, the share of samples whose density
    there still reaches the cut-off that made it a cell (the calibrated threshold, or the
    lowest peak the count took when lower; without samples: the peak's height over twice
    the cut-off, capped at 1). `seed` makes the samples reproducible (None: random).
    An exported model (`CountingModel.exported`) has no dropout: it counts as with
    mc_samples=0 whatever is asked."""
    if model.exported:
        mc_samples = 0
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    x = model.prepare(image)
    out = _run(model, x, mc_samples, seed, tile, overlap)
    density = out[0]
    factor = model.count_factor
    mask = None if region is None else np.asarray(region, bool)
    centres = model.target == "centres"
    peaks = peak_map(density, model.sigma)
    if centres:                          # the cells are the heat-map's peaks
        points, values = find_peaks(peaks, model.threshold, model.min_distance, mask)
        total = float(len(points))
    else:
        total = factor * float(density.sum() if mask is None else density[mask].sum())
        if model.point_rule == "count":
            points, values = strongest_peaks(peaks, points_for(total), model.floor,
                                             model.min_distance, mask)
        else:
            points, values = find_peaks(peaks, model.threshold, model.min_distance, mask)
    # the height that made a peak a cell here: the calibrated threshold, or the lowest peak
    # the count took when that is lower, so points taken below the threshold are not all
    # marked unsure for that alone
    cut = min(model.threshold, float(values.min())) if len(points) else model.threshold
    if mc_samples > 0:
        sampled = out[1:]
        counts = np.array([len(find_peaks(peak_map(one, model.sigma), model.threshold,
                                          model.min_distance, mask)[0]) for one in sampled],
                          np.float64) if centres else \
            factor * (sampled.reshape(len(sampled), -1).sum(1) if mask is None else
                      sampled[:, mask].sum(1))
        low, high = np.percentile(counts, INTERVAL)
        confidence = (sampled[:, points[:, 0], points[:, 1]] >= cut).mean(0) \
            if len(points) else np.zeros(0)
        std = float(counts.std())
    else:
        counts = np.zeros(0)
        low = high = total
        confidence = np.minimum(1.0, values / (2 * cut)) if len(points) else np.zeros(0)
        std = 0.0
    calibrated = calibrated_bounds(model.meta, total)
    if calibrated is not None:     # held-out clicks widen the interval (models.count_interval)
        low, high = min(low, calibrated[0]), max(high, calibrated[1])
    return CountResult(max(0.0, total), max(0.0, float(min(low, total))),
                       max(0.0, float(max(high, total))), points,
                       np.asarray(confidence, np.float64), std, counts,
                       density if keep_density else None)


# --------------------------------------------------------------- persistence
def counter_to_bytes(model: CountingModel) -> bytes:
    if not isinstance(model.module, UNet):
        raise ModelFileError("only counting models trained in CellLoop can be saved")
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    blob = {"format": FORMAT, "format_version": 2 if model.target == "centres" else 1,
            "kind": KIND,
            "meta": json.loads(json.dumps(model.meta)), "state_dict": state}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def _blob(data: bytes):
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ModelFileError(f"not a readable CellLoop model file ({type(exc).__name__})") \
            from None


def counter_from_bytes(data: bytes, expected_sha256: str | None = None) -> CountingModel:
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelFileError("the weight file is corrupt: its checksum does not match")
    blob = _blob(data)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("kind") != KIND:
        raise ModelFileError("not a CellLoop counting model file (a segmentation model "
                             "loads with models.persist.load_model)")
    if int(blob.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"this counting model was saved by a newer CellLoop (format "
                             f"{blob['format_version']}); upgrade to load it")
    meta = blob["meta"]
    try:
        net = UNet(**meta["architecture"])
        net.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"the model's weights do not fit its architecture ({exc})") \
            from None
    net.eval()
    return CountingModel(net, meta)


def save_counter(model: CountingModel, path: str | os.PathLike) -> str:
    """Write atomically; return the file's sha256."""
    from storage.writers import write_bytes
    data = counter_to_bytes(model)
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_counter(source, expected_sha256: str | None = None) -> CountingModel:
    """A `CountingModel` from a file path or bytes (sha256 checked when given): a native
    .cellloop file, or a TorchScript .pt / ONNX .onnx export (`models.counting_export`;
    its module is the exported network)."""
    if isinstance(source, (bytes, bytearray)):
        return counter_from_bytes(bytes(source), expected_sha256)
    path = Path(source)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix in (".pt", ".onnx"):
        from models.counting_export import load_exported
        if expected_sha256 is not None and \
                hashlib.sha256(path.read_bytes()).hexdigest() != expected_sha256:
            raise ModelFileError("the model file is corrupt: its checksum does not match")
        return CountingModel(*load_exported(path))
    return counter_from_bytes(path.read_bytes(), expected_sha256)


def is_counting_model(source) -> bool:
    """Whether bytes or a file hold a counting model (reads the file's marker, or an
    export's card, only)."""
    if not isinstance(source, (bytes, bytearray)) and Path(source).suffix in (".pt", ".onnx"):
        from models.counting_export import read_card
        card = read_card(source)
        return card is not None and card.get("kind") == KIND
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else \
            Path(source).read_bytes()
        blob = _blob(data)
    except (OSError, ModelFileError):
        return False
    return isinstance(blob, dict) and blob.get("format") == FORMAT
