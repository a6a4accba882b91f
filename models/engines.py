"""ONNX Runtime engines for a model's torch network: an in-memory ONNX export
(`onnx_bytes`) and a session that is called like a torch module (`OnnxNet`).

Used by `SegmentationModel.runtime` (fp32 ONNX Runtime on CPUs without native bf16),
`models.quantize` (int8) and `models.uncertainty` (the deterministic part of MC dropout).
Takes any object with `module`, `in_channels` and `multiple` (a `SegmentationModel`), so it
does not import the model class.
"""
from __future__ import annotations

import io

import numpy as np
import torch


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


def example_input(model, size: int = 64) -> torch.Tensor:
    """A zero (1, C, size, size) input for tracing and export (size at least one multiple)."""
    size = max(size, model.multiple)
    return torch.zeros(1, model.in_channels, size, size)


class _Hidden(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.hidden(x)


def onnx_bytes(model, part: str = "logits") -> bytes:
    """An in-memory ONNX export of a torch model (eval mode, current weights): the whole
    network ("logits") or everything before the output dropout ("hidden", for Monte Carlo
    sampling)."""
    net = model.module.to("cpu").eval().to(memory_format=torch.contiguous_format)
    module = (net if part == "logits" else _Hidden(net)).eval()   # export restores this mode
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (example_input(model),), buf, input_names=["image"],
                          output_names=[part], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                        part: {0: "n", 2: "h", 3: "w"}})
    return buf.getvalue()


def onnx_session_for(model, part: str = "logits") -> OnnxNet:
    """An ONNX Runtime session of `onnx_bytes(model, part)`."""
    return OnnxNet(onnx_bytes(model, part))
