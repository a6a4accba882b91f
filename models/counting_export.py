"""Export a counting model (`models.counting.CountingModel`) as TorchScript (`.pt`) or ONNX
(`.onnx`, opset 17), with a JSON model card so it can be used without CellLoop; and read such
a file back as a network and the model's metadata (`models.counting.load_counter` wraps them).

The exported graph is the U-Net in eval mode (no dropout) with the output activation and the
division by `scale`: normalised (N, C, H, W) float32 in ("image"; H, W multiples of
2**depth), the density in cells per pixel out ("density", (N, 1, H, W)). The card says how
to read it: count = count_factor x the density's sum; points = local maxima of the density
smoothed by a Gaussian (`peaks.smoothing_sigma` px), at least `peaks.min_distance` px apart:
with `peaks.select` "count" the highest above `peaks.floor` (cells per pixel), as many as
the count rounded half up, with "threshold" all above `peaks.threshold`. It is embedded
(TorchScript extra file `model_card.json`, ONNX metadata `model_card`) and written beside
the file (`<name>.json`), as `models.export` does for segmentation models, whose loaders
refuse these files (card kind "counting"); `load_exported` refuses theirs. A model trained on
a centre heat-map (`density.target` "centres") outputs that map (1 at a cell's centre), and
its count is the number of its peaks above `peaks.threshold`, which are also its points.

An exported model has no dropout left, so it gives no Monte Carlo samples: `count_image`
counts with it as with `mc_samples=0` (the interval is the calibrated one the card carries,
`interval`, or the count itself).

Takes any object with `module` (a `models.unet.UNet`), `meta`, `in_channels`, `multiple`,
`sigma`, `scale`, `count_factor`, `threshold`, `point_rule`, `floor`, `min_distance`,
`peak_sigma`, `target` and `unit_peak` (a `CountingModel`), so it does not import the model
class.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from models.engines import OnnxNet, example_input
from models.export import COUNTING, CARD_FORMAT, _cpu_eval, read_onnx_card, read_torchscript, \
    write_onnx, write_torchscript
from models.model import ModelFileError

SUFFIXES = (".pt", ".onnx")


class DensityNet(nn.Module):
    """The U-Net's output made a density: activation, then / scale (what is exported)."""

    def __init__(self, net: nn.Module, scale: float, activation: str):
        super().__init__()
        if activation not in ("relu", "linear"):
            raise ModelFileError(f"unknown output activation {activation!r}")
        self.net, self.scale, self.relu = net, float(scale), activation == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return (F.relu(out) if self.relu else out) / self.scale


def counting_card(model) -> dict:
    meta = model.meta
    density = meta["density"]
    mapping = meta.get("input_mapping")
    centres = model.target == "centres"
    return {
        "format": CARD_FORMAT, "card_version": 1, "kind": COUNTING,
        "architecture": meta.get("architecture"), "normalisation": meta.get("normalisation"),
        "input_mapping": mapping,
        "density": {"sigma": model.sigma, "scale": model.scale,
                    "activation": density.get("activation", "linear"),
                    "count_factor": model.count_factor, "target": model.target},
        "count_factor": model.count_factor,
        "peaks": {"threshold": model.threshold,            # cells per pixel
                  "threshold_x_peak_height": float(meta["peaks"]["threshold"]),
                  "select": model.point_rule, "floor": model.floor,   # cells per pixel
                  "floor_x_peak_height": model.floor / model.unit_peak,
                  "min_distance": model.min_distance, "smoothing_sigma": model.peak_sigma},
        "metrics": meta.get("metrics", {}), "training_data": meta.get("training_data", []),
        "version": meta.get("version"),
        # the interval calibrated on held-out clicks (models.count_interval), if any
        "interval": meta.get("interval"),
        "input": "float32 (N, C, H, W), per-channel percentile normalised (normalisation "
                 f"low/high percentiles); H and W multiples of {model.multiple}"
                 + (f", after the input mapping {mapping!r}" if mapping else ""),
        "output": ("centre heat-map (N, 1, H, W), 1 at a cell's centre" if centres else
                   "density (N, 1, H, W) in cells per pixel")
                  + " (output activation and division by scale included; dropout off)",
        "count": "count = the number of points (see points), over the image or a region of "
                 "it" if centres else
                 f"count = count_factor ({model.count_factor:g}) x the sum of the density "
                 "(over the image, or over a region of it)",
        "count_interval": "when `interval` is given: [count x (1 + interval.low), count x "
                          "(1 + interval.high)] holds the true count with probability "
                          "interval.level (split conformal on held-out clicks)",
        "points": _points_text(model),
    }


def _points_text(model) -> str:
    what = "centre heat-map" if model.target == "centres" else "density"
    unit = "" if model.target == "centres" else " cells per pixel"
    maxima = (f"local maxima of the {what} smoothed by a Gaussian of std "
              f"{model.peak_sigma:g} px (smoothing_sigma), at least {model.min_distance} px "
              "apart (peaks.min_distance)")
    if model.point_rule == "count":
        return (f"cells as points (peaks.select 'count') = the highest {maxima} that are "
                f"above {model.floor:.6g} cells per pixel (peaks.floor), as many as the count "
                "rounded half up (fewer where fewer maxima clear the floor)")
    return (f"cells as points (peaks.select 'threshold') = the {maxima} that are above "
            f"{model.threshold:.6g}{unit} (peaks.threshold)")


def _density_net(model) -> DensityNet:
    density = model.meta["density"]
    return DensityNet(_cpu_eval(model), model.scale, density.get("activation", "linear")).eval()


def export_torchscript(model, path: str | os.PathLike) -> Path:
    return write_torchscript(_density_net(model), example_input(model), path,
                             counting_card(model))


def export_onnx(model, path: str | os.PathLike, opset: int = 17) -> Path:
    return write_onnx(_density_net(model), example_input(model), path, counting_card(model),
                      "density", opset)


def meta_from_card(card: dict) -> dict:
    """A counting model's meta from its card (the peak threshold relative to one cell's
    peak height, as the native file keeps it)."""
    density, peaks = card["density"], card["peaks"]
    meta = {"kind": COUNTING, "architecture": card["architecture"],
            "normalisation": card.get("normalisation") or {},
            "density": {**{k: density[k] for k in ("sigma", "scale", "activation",
                                                   "count_factor")},
                        "target": density.get("target", "density")},
            "peaks": {"threshold": peaks["threshold_x_peak_height"],
                      "select": peaks.get("select", "threshold"),
                      "min_distance": peaks["min_distance"]},
            "metrics": card.get("metrics") or {}, "version": card.get("version"),
            "exported": True}
    if "floor_x_peak_height" in peaks:          # cards written before the "count" rule: none
        meta["peaks"]["floor"] = peaks["floor_x_peak_height"]
    if card.get("interval"):
        meta["interval"] = card["interval"]
    if card.get("input_mapping"):
        meta["input_mapping"] = card["input_mapping"]
    return meta


def read_card(path: str | os.PathLike) -> dict | None:
    """The card of an exported .pt / .onnx file, or None when it has none."""
    path = Path(path)
    try:
        if path.suffix == ".onnx":
            return read_onnx_card(path)
        if path.suffix == ".pt":
            return read_torchscript(path)[1]
    except (ModelFileError, OSError, ValueError):
        return None
    return None


def load_exported(path: str | os.PathLike, threads: int = 0):
    """(network, meta) of an exported counting model: a TorchScript module or an ONNX
    Runtime session (`models.engines.OnnxNet`), each mapping a normalised (N, C, H, W)
    tensor to the density."""
    path = Path(path)
    if path.suffix == ".onnx":
        card, net = read_onnx_card(path), None
    elif path.suffix == ".pt":
        net, card = read_torchscript(path)
    else:
        raise ModelFileError(f"{path}: an exported model is a .pt or .onnx file")
    if card.get("kind") != COUNTING:
        raise ModelFileError(f"{path}: not a counting model (a segmentation model loads with "
                             "models.load_model)")
    try:
        meta = meta_from_card(card)
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: the counting model card lacks {exc}") from None
    return (net if net is not None else OnnxNet(path, threads)), meta
