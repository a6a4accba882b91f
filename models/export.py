"""Export a model as TorchScript and ONNX, each with a JSON model card (channels,
normalisation, classes, metrics, training data, version) so it works without CellLoop.

The card is written beside the file (`<name>.json`) and also embedded (TorchScript extra file
`model_card.json`, ONNX metadata `model_card`), so `load_model` can use the exported files.
Exports run the network in eval mode (no dropout); inputs are normalised (N, C, H, W) float32
with H, W multiples of 2**depth; outputs are logits (N, K, H, W).

`write_torchscript`, `write_onnx`, `read_torchscript` and `read_onnx_card` do the file work
for any network and card (`models.counting_export` uses them for counting models, whose card
has kind "counting": `load_torchscript` / `load_onnx` refuse those).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from models.engines import OnnxNet, example_input
from models.model import ModelFileError, SegmentationModel
from storage.writers import atomic_path, write_bytes

CARD_NAME = "model_card.json"
CARD_FORMAT = "cellloop-model-card"
COUNTING = "counting"      # a counting model's card kind (models.counting.KIND)


def model_card(model: SegmentationModel, extra: dict | None = None) -> dict:
    meta = model.meta
    return {
        "format": CARD_FORMAT, "card_version": 1,
        "architecture": meta.get("architecture"), "kind": meta.get("kind", "instance"),
        "classes": meta.get("classes", ["background", "cell interior", "cell boundary"]),
        "channels": meta.get("channels", []), "normalisation": meta.get("normalisation"),
        "postprocess": meta.get("postprocess", {}), "metrics": meta.get("metrics", {}),
        "training_data": meta.get("training_data", []), "version": meta.get("version"),
        # a model that reads images through a mapping (the built-in nuclei model) keeps it
        "input_mapping": meta.get("input_mapping"),
        "input": "float32 (N, C, H, W), per-channel percentile normalised; H and W multiples "
                 f"of {model.multiple}" + (f", after the input mapping {meta['input_mapping']!r}"
                                           if meta.get("input_mapping") else ""),
        "output": "logits (N, K, H, W); softmax over K gives class probabilities",
        **(extra or {}),
    }


def _write_card(path: Path, card: dict) -> None:
    write_bytes(path.with_suffix(".json"), json.dumps(card, indent=1).encode())


def _cpu_eval(model) -> torch.nn.Module:
    """The model's torch module on the CPU, eval mode, contiguous (its runtime is chosen
    again on next use)."""
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    model._runtime = None
    return net


def write_torchscript(net: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike,
                      card: dict) -> Path:
    """Trace `net` (eval mode) on `example` and write it atomically with `card` embedded and
    beside it."""
    path = Path(path)
    with torch.no_grad():
        traced = torch.jit.trace(net.eval(), example, check_trace=False)
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={CARD_NAME: json.dumps(card)})
    _write_card(path, card)
    return path


def write_onnx(net: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike,
               card: dict, output: str = "logits", opset: int = 17) -> Path:
    """Export `net` (eval mode) as ONNX (input "image", output `output`, dynamic N, H, W)
    atomically, with `card` in the metadata and beside it."""
    import onnx

    path = Path(path)
    with atomic_path(path) as tmp:
        with torch.no_grad():
            torch.onnx.export(net.eval(), (example,), str(tmp), input_names=["image"],
                              output_names=[output], opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                            output: {0: "n", 2: "h", 3: "w"}})
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "model_card", json.dumps(card)
        onnx.save(proto, str(tmp))
    _write_card(path, card)
    return path


def export_torchscript(model: SegmentationModel, path: str | os.PathLike) -> Path:
    net = _cpu_eval(model)
    return write_torchscript(net, example_input(model), path, model_card(model))


def export_onnx(model: SegmentationModel, path: str | os.PathLike, opset: int = 17) -> Path:
    net = _cpu_eval(model)
    return write_onnx(net, example_input(model), path, model_card(model), "logits", opset)


def _meta_from_card(card: dict) -> dict:
    meta = {k: card.get(k) for k in ("architecture", "kind", "classes", "channels",
                                     "normalisation", "postprocess", "metrics", "version")}
    if card.get("input_mapping"):
        meta["input_mapping"] = card["input_mapping"]
    return meta


def _checked(path, card: dict) -> dict:
    if card.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{path}: no CellLoop model card inside")
    return card


def _segmentation_card(path, card: dict) -> dict:
    if _checked(path, card).get("kind") == COUNTING:
        raise ModelFileError(f"{path}: a counting model (it finds cells as points); load it "
                             "with models.counting.load_counter or count with models.count")
    return card


def read_torchscript(path: str | os.PathLike):
    """(network, card) of an exported TorchScript file (card checked for its format)."""
    files = {CARD_NAME: ""}
    try:
        net = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except (RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable TorchScript file ({exc})") from None
    card = _checked(path, json.loads(files[CARD_NAME] or "{}"))
    net.eval()
    return net, card


def read_onnx_card(path: str | os.PathLike) -> dict:
    """The card in an exported ONNX file's metadata (checked for its format)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelFileError(f"{path}: not a readable ONNX file ({type(exc).__name__})") \
            from None
    props = {p.key: p.value for p in proto.metadata_props}
    return _checked(path, json.loads(props.get("model_card", "{}")))


def load_torchscript(path: str | os.PathLike) -> SegmentationModel:
    net, card = read_torchscript(path)
    return SegmentationModel(net, _meta_from_card(_segmentation_card(path, card)))


def load_onnx(path: str | os.PathLike, threads: int = 0) -> SegmentationModel:
    card = _segmentation_card(path, read_onnx_card(path))
    return SegmentationModel(OnnxNet(path, threads), _meta_from_card(card))
