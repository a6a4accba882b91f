"""Training: one plain function over arrays, used by the web job, the CLI, tests and
benchmarks alike.

Patches are sampled from annotated pixels (foreground-aware), augmented, and fitted with
cross-entropy + soft Dice that ignore unannotated pixels; AdamW with a cosine schedule;
early stopping on validation F1 (or Dice for semantic models); the best epoch's weights are
kept. Same data, settings and seed give the same weights on the CPU.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from models.calibration import calibrate
from models.cancel import Cancelled
from models.data import IGNORE, PatchSampler, Sample, normalise, semantic_targets, \
    targets_from_labels
from models.device import select_runtime, set_threads
from models.ema import WeightAverage
from models.inference import input_mapping
from models.metrics import mean_scores, score
from models.quantize import calibration_patches
from models.model import SegmentationModel
from models.unet import UNet

log = logging.getLogger(__name__)


CALIBRATION_PIXELS = 8_000_000       # annotated pixels the post-processing choice may use
CALIBRATION_FRACTION = 0.1           # with a time budget: the share of it reserved for that,
CALIBRATION_RATE = 60_000            # at the pixels/s it runs at on a 2-core CPU (measured)


class TrainingError(ValueError):
    """Training cannot start (no data, shapes that do not fit); the message says why."""


@dataclass
class TrainConfig:
    width: int = 32
    depth: int = 4
    dropout: float = 0.2
    patch: int = 256
    batch: int = 8
    epochs: int = 40
    steps_per_epoch: int = 50
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    max_seconds: float | None = None
    fg_fraction: float = 0.6
    image_power: float = 1.0         # images drawn in proportion to annotated pixels ** this
    boundary_weight: float = 1.0
    touch_width: int = 0             # widen the boundary target where cells touch (pixels)
    dice_weight: float = 1.0
    ema: float = 0.0                 # > 0: evaluate and keep an EMA of the weights (decay)
    pull: float = 0.0                # fine-tuning: > 0 pulls the weights back to `init`'s
                                     # after every step (decoupled L2-SP, see _PullToStart);
                                     # lr x pull must stay below 1
    min_size: int = 12
    calibrate: bool = True          # choose the post-processing on annotated images
    semantic: bool = False          # labels are class maps, not instances
    n_classes: int = 3
    threads: int = 0
    device: str | None = None
    precision: str = "auto"          # "auto": bf16 autocast on CUDA and on CPUs with native
                                     # bf16 (2.4x the patches/s of fp32 on AMX), else fp32
    deterministic: bool = True
    normalisation: tuple = (1.0, 99.8)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model: SegmentationModel
    history: list[dict]
    best_epoch: int
    metrics: dict
    seconds: float
    steps: int
    patches_per_s: float
    stopped: str                     # "epochs", "early-stopping", "time budget"
    train_ids: list = field(default_factory=list)
    val_ids: list = field(default_factory=list)
    calibration_ids: list = field(default_factory=list)   # images the post-processing chose on


def _samples(images, labels, regions, cfg: TrainConfig, on_image=None) -> list[Sample]:
    out = []
    for k, (img, lab) in enumerate(zip(images, labels)):
        if on_image is not None:
            on_image(k, len(images))
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[None]
        lab = np.asarray(lab)
        if img.shape[1:] != lab.shape:
            raise TrainingError(f"image {k}: shape {img.shape[1:]} but labels {lab.shape}")
        region = None if regions is None else regions[k]
        target = (semantic_targets(lab, region) if cfg.semantic
                  else targets_from_labels(lab, region, cfg.touch_width))
        out.append(Sample(normalise(img, *cfg.normalisation), target))
    return out


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Validation indices: a fixed fraction (at least one image) when there are 2+ images;
    with one image, it is used for both."""
    if n < 2:
        return list(range(n)), list(range(n))
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = max(1, int(round(n * fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def loss_fn(logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    weights = torch.ones(cfg.n_classes, device=logits.device)
    if not cfg.semantic and cfg.n_classes == 3:
        weights[2] = cfg.boundary_weight
    ce = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
    valid = (target != IGNORE).unsqueeze(1).float()
    probs = F.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp(max=cfg.n_classes - 1), cfg.n_classes
                       ).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)[1:]
    denom = (probs + onehot).sum(dims)[1:]
    dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return ce + cfg.dice_weight * dice


def evaluate(model: SegmentationModel, images, labels, cfg: TrainConfig,
             on_image: Callable[[int, int], None] | None = None) -> dict:
    """Validation metrics on whole images (tiled inference), with "se", the standard error of
    the per-image F1 (Dice) over the images: the epoch kept is the latest whose score is
    within one standard error of the best, since an earlier epoch that scores a little
    higher on a few validation images is noise more often than a better model.
    `on_image(done, total)` is called before the first image and after each one."""
    scores, dices = [], []
    if on_image is not None:
        on_image(0, len(images))
    for img, lab in zip(images, labels):
        probs = model.probabilities(img, tile=512, overlap=32)
        if cfg.semantic:
            pred = probs.argmax(0)
            fg_true, fg_pred = lab > 0, pred > 0
            inter = np.logical_and(fg_true, fg_pred).sum()
            dices.append(2 * inter / max(1, fg_true.sum() + fg_pred.sum()))
        else:
            scores.append(score(lab, model.instances(probs)))
        if on_image is not None:
            on_image(len(scores) + len(dices), len(images))
    if cfg.semantic:
        return {"dice": float(np.mean(dices)), "n_images": len(dices), "se": _se(dices)}
    return {**mean_scores(scores), "se": _se([s.f1 for s in scores])}


def _se(values) -> float:
    """Standard error of the mean over validation images (0 for one image)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _calibrate(model: SegmentationModel, cfg: TrainConfig, val_images, val_labels,
               more_images=(), more_labels=(), train_labels=(),
               on_image: Callable[[int, int], None] | None = None) -> dict:
    """Choose the post-processing (models.calibration) on the validation images followed by
    `more_images` (fully annotated training images), at most `calibration_pixels(cfg)` of
    them (at least one image); store it in the model and return the metrics it gives on the
    validation images it used. `on_image(done, total)` reports the images gone through."""
    images, labels = list(val_images) + list(more_images), list(val_labels) + list(more_labels)
    kept = []                       # the validation images' probabilities, for the metrics
    total = calibration_count(labels, calibration_pixels(cfg))

    def probabilities():
        for k, img in enumerate(images):
            if on_image is not None:
                on_image(k, total)
            probs = model.probabilities(img, tile=512, overlap=32)
            if k < len(val_images):
                kept.append(probs)
            yield probs

    chosen = calibrate(probabilities(), labels, cfg.min_size, 0.5, list(train_labels),
                       max_pixels=calibration_pixels(cfg))
    chosen["n_validation_images"] = len(kept)
    used = ("min_size", "fg_threshold", "split")
    model.meta["postprocess"] = {**{k: chosen[k] for k in used},
                                 "calibration": {k: v for k, v in chosen.items() if k not in used}}
    log.info("post-processing calibrated on %d images (%d validation): %s",
             chosen["n_images"], len(kept), chosen)
    if on_image is not None:
        on_image(chosen["n_images"], chosen["n_images"])
    return mean_scores([score(lab, model.instances(p)) for p, lab in zip(kept, labels)])


def calibration_count(labels, max_pixels: int) -> int:
    """How many of `labels`, taken in order, the post-processing choice goes through: as
    many as fit in `max_pixels` (at least one), the rule `models.calibration.calibrate`
    applies; for progress reports."""
    n = pixels = 0
    for lab in labels:
        pixels += np.asarray(lab).size
        if n and pixels > max_pixels:
            break
        n += 1
    return n


def calibration_pixels(cfg: TrainConfig) -> int:
    """Annotated pixels the post-processing choice may use: CALIBRATION_PIXELS, or with a
    training time budget what a tenth of it buys at CALIBRATION_RATE (fixed numbers, so the
    choice does not depend on the machine's speed)."""
    if not cfg.max_seconds:
        return CALIBRATION_PIXELS
    return min(CALIBRATION_PIXELS, int(CALIBRATION_FRACTION * cfg.max_seconds * CALIBRATION_RATE))


def _planned_run(planned: int, cfg: TrainConfig) -> int:
    """The steps a plan of `planned` steps runs: epochs are finished whole."""
    per_epoch = max(1, cfg.steps_per_epoch)
    return min(cfg.epochs * per_epoch, -(-planned // per_epoch) * per_epoch)


def check_pull(pull: float, lr: float) -> None:
    """Raise TrainingError unless 0 <= pull and lr x pull < 1 (at 1 or more every step would
    put the weights back where they started: no fine-tuning at all)."""
    if not pull >= 0:
        raise TrainingError(f"pull must be 0 or more, not {pull}")
    if lr * pull >= 1:
        raise TrainingError(f"pull ({pull:g}) times the learning rate ({lr:g}) must be below 1; "
                            f"at 1 or more fine-tuning would change nothing")


class _PullToStart:
    """Decoupled L2-SP (Li et al., ICML 2018, applied like AdamW's decay): after each step,
    w <- w - lr * pull * (w - w_start). Adam moves a weight by about lr a step, so a weight
    settles within about 1/pull of where fine-tuning started: a few labelled images can
    adjust the start model without overwriting what it knew of the images not labelled."""

    def __init__(self, net: torch.nn.Module, pull: float):
        self.pull = pull
        self.start = [p.detach().clone() for p in net.parameters()]

    @torch.no_grad()
    def __call__(self, net: torch.nn.Module, lr: float) -> None:
        for p, p0 in zip(net.parameters(), self.start):
            p.sub_(p - p0, alpha=min(1.0, lr * self.pull))


def fully_annotated(ids, regions, seed: int) -> list[int]:
    """The ids whose whole image is annotated, in a seeded random order."""
    ids = [i for i in ids if regions is None or regions[i] is None or bool(np.all(regions[i]))]
    return [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]


def train_model(images: list[np.ndarray], labels: list[np.ndarray],
                regions: list[np.ndarray | None] | None = None,
                config: TrainConfig | None = None,
                val_images: list[np.ndarray] | None = None,
                val_labels: list[np.ndarray] | None = None,
                init: SegmentationModel | None = None,
                progress: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                meta: dict | None = None,
                on_step: Callable[[dict], None] | None = None,
                image_weights: list[float] | None = None) -> TrainResult:
    """Train a U-Net. images: (C, Y, X) or (Y, X) raw arrays; labels: (Y, X) instance labels
    (class maps if `config.semantic`); regions: (Y, X) bool annotated masks or None. Without
    val_* a validation split is taken from the data. `init` fine-tunes an existing model
    (`config.pull` keeps it near its start).
    `progress(dict)` is called after each epoch, and once more (with "phase": "calibration")
    before the post-processing is chosen; `should_stop()` between steps cancels.
    `on_step(dict)` follows the work as it goes, for progress bars (it changes nothing in
    the training): {"phase": "prepare", "done", "total"} before each image's targets are
    made, {"phase": "train", "step", "steps" (the steps the plan runs, whole
    epochs), "epoch", "loss", ...} after every step, {"phase": "validate", "done", "total",
    ...} before and after each validation image, and {"phase": "calibrate", "done",
    "total"} while the post-processing is chosen.

    Input mapping: when `init` (or `meta`) names an `input_mapping` (the built-in nuclei
    model, models.inference.network_input), training and validation images are read
    through it, as prediction reads them, and the new model keeps it in its meta.
    `image_weights` (one per image, optional) multiply each training image's chance of
    being drawn for a patch (e.g. to balance groups of images); None changes nothing."""
    cfg = config or TrainConfig()
    if not images:
        raise TrainingError("There are no annotated images to train on.")
    check_pull(cfg.pull, cfg.lr)
    if cfg.pull and init is None:           # nothing to pull back to: say so in the meta
        cfg = dataclasses.replace(cfg, pull=0.0)
    if len(images) != len(labels):
        raise TrainingError("images and labels differ in number")
    if image_weights is not None and len(image_weights) != len(images):
        raise TrainingError("image_weights and images differ in number")
    mapping_name = (init.meta.get("input_mapping") if init is not None else None) or \
        (meta or {}).get("input_mapping")
    if mapping_name:
        mapping = input_mapping({"input_mapping": mapping_name})
        images = [mapping(np.asarray(img)) for img in images]
        if val_images is not None:
            val_images = [mapping(np.asarray(img)) for img in val_images]
        meta = {**(meta or {}), "input_mapping": mapping_name}
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    samples = _samples(images, labels, regions, cfg, None if on_step is None else (
        lambda done, total: on_step({"phase": "prepare", "done": done, "total": total})))
    in_channels = samples[0].image.shape[0]
    if any(s.image.shape[0] != in_channels for s in samples):
        raise TrainingError("all images must have the same number of channels")
    if val_images is None:
        train_ids, val_ids = split(len(samples), cfg.val_fraction, cfg.seed)
        val_images = [images[i] for i in val_ids]
        val_labels = [labels[i] for i in val_ids]
    else:
        train_ids, val_ids = list(range(len(samples))), []
    train_samples = [samples[i] for i in train_ids]
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise TrainingError(f"precision must be auto, fp32 or bf16, not {cfg.precision!r}")
    runtime = select_runtime(cfg.precision, cfg.device)
    if init is not None:
        if init.in_channels != in_channels:
            raise TrainingError(f"the model to fine-tune takes {init.in_channels} channel(s), "
                                f"the images have {in_channels}")
        net = copy.deepcopy(init.module)
    else:
        net = UNet(in_channels, cfg.n_classes, cfg.width, cfg.depth, cfg.dropout)
    net.to(runtime.device)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)
    meta = {**(meta or {}), "architecture": net.config, "kind": "semantic" if cfg.semantic
            else "instance", "normalisation": {"kind": "percentile", "low": cfg.normalisation[0],
                                               "high": cfg.normalisation[1]},
            "postprocess": {"min_size": cfg.min_size}, "train_config": cfg.as_dict(),
            "training_engine": runtime.name}
    model = SegmentationModel(net, meta, module=net)
    sampler = PatchSampler(train_samples, cfg.patch, rng, cfg.fg_fraction, cfg.image_power)
    if image_weights is not None:
        weighted = sampler.weights * np.asarray(image_weights, np.float64)[train_ids]
        if not weighted.sum() > 0:
            raise TrainingError("image_weights leave no image to draw patches from")
        sampler.weights = weighted / weighted.sum()
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    planned = cfg.epochs * cfg.steps_per_epoch
    calibrating = cfg.calibrate and not cfg.semantic and cfg.n_classes == 3
    # a time budget covers the post-processing choice too
    budget = cfg.max_seconds and cfg.max_seconds * (1 - (CALIBRATION_FRACTION if calibrating else 0))
    scheduler = None
    ema = WeightAverage(net, cfg.ema) if cfg.ema > 0 else None
    pull = _PullToStart(net, cfg.pull) if cfg.pull > 0 and init is not None else None
    history, best, best_state, best_epoch, bad_epochs = [], -1.0, None, 0, 0
    tolerance = 0.0
    started, steps, stopped = time.perf_counter(), 0, "epochs"
    try:
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            losses = []
            for _ in range(cfg.steps_per_epoch):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                x, y = sampler.batch(cfg.batch)
                xt = torch.from_numpy(x).to(runtime.device)
                if runtime.channels_last:
                    xt = xt.contiguous(memory_format=torch.channels_last)
                yt = torch.from_numpy(y).to(runtime.device)
                with runtime.autocast():
                    logits = net(xt)
                loss = loss_fn(logits.float(), yt, cfg)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if pull is not None:
                    pull(net, optimiser.param_groups[0]["lr"])
                if ema is not None:
                    ema.update(net)
                steps += 1
                losses.append(float(loss.detach()))
                if scheduler is None and steps == 3:
                    per_step = (time.perf_counter() - started) / 3
                    if budget:
                        planned = max(steps + 1, min(planned, int(budget * 0.85 / per_step)))
                    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                        optimiser, T_max=max(1, planned - steps))
                elif scheduler is not None and steps < planned:
                    scheduler.step()
                if on_step is not None:
                    on_step({"phase": "train", "step": steps, "epoch": epoch,
                             "steps": _planned_run(planned, cfg), "loss": losses[-1],
                             "epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch,
                             "seconds": time.perf_counter() - started})
            net.eval()
            on_image = None if on_step is None else (
                lambda done, total, epoch=epoch: on_step({
                    "phase": "validate", "done": done, "total": total, "epoch": epoch,
                    "step": steps, "steps": _planned_run(planned, cfg)}))
            with ema.applied(net) if ema is not None else contextlib.nullcontext():
                metrics = evaluate(model, val_images, val_labels, cfg, on_image)
            key = metrics.get("dice" if cfg.semantic else "f1", 0.0)
            elapsed = time.perf_counter() - started
            entry = {"epoch": epoch, "step": steps, "loss": float(np.mean(losses)),
                     "seconds": round(elapsed, 2), **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(entry)
            if key > best:
                best, tolerance, bad_epochs = key, metrics.get("se", 0.0), 0
            else:
                bad_epochs += 1
            if key >= best - tolerance:     # the latest epoch within noise of the best
                best_epoch, best_state = epoch, copy.deepcopy(
                    ema.state if ema is not None else net.state_dict())
            if epoch == 1 and budget and steps < planned:
                # the first estimate left out validation; with a whole epoch measured, plan
                # the whole epochs that fit and restart the cosine from here (barely moved)
                fit = int(budget * 0.97 / elapsed) * cfg.steps_per_epoch
                planned = max(steps + 1, min(cfg.epochs * cfg.steps_per_epoch, fit))
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                    optimiser, T_max=max(1, planned - steps))
            if progress is not None:
                progress({**entry, "best_epoch": best_epoch, "planned_steps": planned,
                          "epochs": cfg.epochs})
            log.info("epoch %d loss %.4f val %s", epoch, entry["loss"], metrics)
            if bad_epochs >= cfg.patience:
                stopped = "early-stopping"
                break
            if steps >= planned or (budget and elapsed + elapsed / epoch > budget):
                stopped = "time budget" if cfg.max_seconds and steps < cfg.epochs * cfg.steps_per_epoch \
                    else "epochs"
                break
    finally:
        if cfg.deterministic and not deterministic_before:
            torch.use_deterministic_algorithms(False)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    sampler.rng = np.random.default_rng(cfg.seed + 1)     # training is over: a fixed draw
    model.calibration = calibration_patches(sampler)
    seconds = time.perf_counter() - started
    best_metrics = {k[4:]: v for k, v in history[best_epoch - 1].items() if k.startswith("val_")}
    calibration_ids = []
    if calibrating:
        if progress is not None:
            progress({**history[-1], "phase": "calibration", "best_epoch": best_epoch,
                      "planned_steps": planned, "epochs": cfg.epochs})
        held_out = set(val_ids)
        more = fully_annotated([i for i in train_ids if i not in held_out], regions, cfg.seed)
        best_metrics = _calibrate(model, cfg, val_images, val_labels,
                                  [images[i] for i in more], [labels[i] for i in more],
                                  [labels[i] for i in train_ids], None if on_step is None else (
                                      lambda done, total: on_step({"phase": "calibrate",
                                                                   "done": done, "total": total})))
        used = model.meta["postprocess"]["calibration"]["n_images"]
        calibration_ids = (list(val_ids) + more)[:used]
    model.meta["metrics"] = best_metrics
    model.meta["curve"] = history
    return TrainResult(model, history, best_epoch, best_metrics, seconds, steps,
                       steps * cfg.batch / seconds, stopped, train_ids, val_ids, calibration_ids)
