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

import numpy as np
import torch

from models.inference import SegmentationModel

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
        "input": "float32 (N, C, H, W), per-channel percentile normalised; H and W multiples "
                 f"of {model.multiple}",
        "output": "logits (N, K, H, W); softmax over K gives class probabilities",
        **(extra or {}),
    }


def _example(model: SegmentationModel, size: int = 64) -> torch.Tensor:
    size = max(size, model.multiple)
    return torch.zeros(1, model.in_channels, size, size)


def export_torchscript(model: SegmentationModel, path: str | os.PathLike) -> Path:
    path = Path(path)
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    model._runtime = None
    with torch.no_grad():
        traced = torch.jit.trace(net, _example(model), check_trace=False)
    card = model_card(model)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(traced, str(tmp), _extra_files={CARD_NAME: json.dumps(card)})
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return path


def export_onnx(model: SegmentationModel, path: str | os.PathLike, opset: int = 17) -> Path:
    import onnx

    path = Path(path)
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    model._runtime = None
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(net, (_example(model),), str(tmp), input_names=["image"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                        "logits": {0: "n", 2: "h", 3: "w"}})
    proto = onnx.load(str(tmp))
    card = model_card(model)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_card", json.dumps(card)
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return path


def _meta_from_card(card: dict) -> dict:
    return {k: card.get(k) for k in ("architecture", "kind", "classes", "channels",
                                     "normalisation", "postprocess", "metrics", "version")}


def load_torchscript(path: str | os.PathLike) -> SegmentationModel:
    files = {CARD_NAME: ""}
    net = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    card = json.loads(files[CARD_NAME] or "{}")
    if card.get("format") != "cellloop-model-card":
        from models.persist import ModelFileError
        raise ModelFileError(f"{path}: no CellLoop model card inside")
    net.eval()
    return SegmentationModel(net, _meta_from_card(card))


class OnnxNet:
    """Calls an ONNX Runtime session like a torch module (tensor in, tensor out)."""

    def __init__(self, path_or_bytes, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.float().contiguous().cpu().numpy()
        output = self.session.get_outputs()[0].name
        out = self.session.run([output], {"image": np.ascontiguousarray(array)})[0]
        return torch.from_numpy(out)


class _Hidden(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.hidden(x)


def onnx_bytes(model: SegmentationModel, part: str = "logits") -> bytes:
    """An in-memory ONNX export of a torch model (eval mode, current weights): the whole
    network ("logits") or everything before the output dropout ("hidden", for Monte Carlo
    sampling)."""
    import io

    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    module = (net if part == "logits" else _Hidden(net)).eval()   # export restores this mode
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (_example(model),), buf, input_names=["image"],
                          output_names=[part], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                        part: {0: "n", 2: "h", 3: "w"}})
    return buf.getvalue()


def onnx_session_for(model: SegmentationModel, part: str = "logits") -> OnnxNet:
    """An ONNX Runtime session of `onnx_bytes(model, part)`."""
    return OnnxNet(onnx_bytes(model, part))


def load_onnx(path: str | os.PathLike, threads: int = 0) -> SegmentationModel:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(props.get("model_card", "{}"))
    if card.get("format") != "cellloop-model-card":
        from models.persist import ModelFileError
        raise ModelFileError(f"{path}: no CellLoop model card inside")
    model = SegmentationModel(OnnxNet(path, threads), _meta_from_card(card))
    return model
