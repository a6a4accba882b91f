"""Saving and loading models.

Native format (`.cellloop`): a torch file holding only tensors and plain data (loaded with
`weights_only=True`, so a weight file cannot run code), with the architecture and metadata.
Its sha256 is recorded when it is stored, and checked when it is loaded, so a corrupt or
swapped file is refused. Exported TorchScript (`.pt`) and ONNX (`.onnx`) files carry their
model card inside and load too.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from models.export import load_onnx, load_torchscript
from models.model import ModelFileError, SegmentationModel
from models.unet import UNet
from storage.writers import write_bytes

FORMAT = "cellloop-model"
FORMAT_VERSION = 1

__all__ = ["ModelFileError", "load_model", "model_from_bytes", "model_to_bytes", "save_model"]


def model_to_bytes(model: SegmentationModel) -> bytes:
    if not isinstance(model.module, UNet):
        raise ModelFileError("only models trained in CellLoop can be saved in the native format")
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "meta": json.loads(json.dumps(model.meta)), "state_dict": state}
    if model.calibration is not None:
        blob["calibration"] = torch.from_numpy(np.ascontiguousarray(model.calibration,
                                                                    dtype=np.float16))
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def model_from_bytes(data: bytes, expected_sha256: str | None = None) -> SegmentationModel:
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelFileError("the weight file is corrupt: its checksum does not match")
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ModelFileError(f"not a readable CellLoop model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError("not a CellLoop model file")
    if int(blob.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"this model was saved by a newer CellLoop (format "
                             f"{blob['format_version']}); upgrade to load it")
    meta = blob["meta"]
    try:
        net = UNet(**meta["architecture"])
        net.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"the model's weights do not fit its architecture ({exc})") from None
    net.eval()
    calibration = blob.get("calibration")
    if calibration is not None:
        calibration = calibration.numpy()
        if calibration.ndim != 4 or calibration.shape[1] != net.config["in_channels"]:
            raise ModelFileError(f"the model's calibration patches have the wrong shape "
                                 f"{tuple(calibration.shape)}")
    return SegmentationModel(net, meta, module=net, frozen=True, calibration=calibration)


def save_model(model: SegmentationModel, path: str | os.PathLike) -> str:
    """Write atomically; return the file's sha256."""
    data = model_to_bytes(model)
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_model(source, expected_sha256: str | None = None) -> SegmentationModel:
    if isinstance(source, (bytes, bytearray)):
        return model_from_bytes(bytes(source), expected_sha256)
    path = Path(source)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        return load_onnx(path)
    if path.suffix == ".pt":
        return load_torchscript(path)
    return model_from_bytes(path.read_bytes(), expected_sha256)
