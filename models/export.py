"""Export a model as TorchScript and ONNX, each with a JSON model card (channels,
normalisation, classes, metrics, training data, version) so it works without CellLoop.

The card is written beside the file (`<name>.json`) and also embedded (TorchScript extra file
`model_card.json`, ONNX metadata `model_card`), so `load_model` can use the exported files.
Exports run the network in eval mode (no dropout); inputs are normalised (N, C, H, W) float32
with H, W multiples of 2**depth; outputs are logits (N, K, H, W).
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


def model_card(model: SegmentationModel, extra: dict | None = None) -> dict:
    meta = model.meta
    return {
        "format": "cellloop-model-card", "card_version": 1,
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


def export_torchscript(model: SegmentationModel, path: str | os.PathLike) -> Path:
    path = Path(path)
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    model._runtime = None
    with torch.no_grad():
        traced = torch.jit.trace(net, example_input(model), check_trace=False)
    card = model_card(model)
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={CARD_NAME: json.dumps(card)})
    _write_card(path, card)
    return path


def export_onnx(model: SegmentationModel, path: str | os.PathLike, opset: int = 17) -> Path:
    import onnx

    path = Path(path)
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    model._runtime = None
    card = model_card(model)
    with atomic_path(path) as tmp:
        with torch.no_grad():
            torch.onnx.export(net, (example_input(model),), str(tmp), input_names=["image"],
                              output_names=["logits"], opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                            "logits": {0: "n", 2: "h", 3: "w"}})
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "model_card", json.dumps(card)
        onnx.save(proto, str(tmp))
    _write_card(path, card)
    return path


def _meta_from_card(card: dict) -> dict:
    meta = {k: card.get(k) for k in ("architecture", "kind", "classes", "channels",
                                     "normalisation", "postprocess", "metrics", "version")}
    if card.get("input_mapping"):
        meta["input_mapping"] = card["input_mapping"]
    return meta


def load_torchscript(path: str | os.PathLike) -> SegmentationModel:
    files = {CARD_NAME: ""}
    net = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    card = json.loads(files[CARD_NAME] or "{}")
    if card.get("format") != "cellloop-model-card":
        raise ModelFileError(f"{path}: no CellLoop model card inside")
    net.eval()
    return SegmentationModel(net, _meta_from_card(card))


def load_onnx(path: str | os.PathLike, threads: int = 0) -> SegmentationModel:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(props.get("model_card", "{}"))
    if card.get("format") != "cellloop-model-card":
        raise ModelFileError(f"{path}: no CellLoop model card inside")
    return SegmentationModel(OnnxNet(path, threads), _meta_from_card(card))
