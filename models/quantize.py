"""Int8 inference for CPUs without native bf16, opt-in (`INFERENCE_PRECISION=int8`):
measured 1.38x the speed of fp32 ONNX Runtime on the DSB test images with the 2-core AVX2
CPU here, at test F1 0.862 vs 0.867 (`python bench/bench_int8.py`, docs/benchmarks.md).

The network is exported to ONNX and quantized statically (weights int8 per output channel,
activations uint8) with ranges measured on the model's own calibration patches: normalised
training patches that training stores with the model (`SegmentationModel.calibration`). The
same patches give the same int8 model, so predictions are reproducible. Done in memory at
first use, like the fp32 ONNX Runtime session.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from models.engines import OnnxNet, onnx_bytes

CALIBRATION_PATCHES = 16
CALIBRATION_SIZE = 128


class _Patches:
    """onnxruntime's CalibrationDataReader protocol: one patch per call, then None."""

    def __init__(self, patches: np.ndarray):
        self._items = iter([{"image": p[None].astype(np.float32)} for p in patches])

    def get_next(self):
        return next(self._items, None)


@contextlib.contextmanager
def _quiet_advice():
    """onnxruntime's quantizer logs "Please consider pre-processing" on the root logger every
    time; that advice (symbolic shape inference) does not apply to this model, so drop it."""
    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def int8_session(model, threads: int = 0):
    """An ONNX Runtime session of `model` quantized to int8 (an `OnnxNet`)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if model.calibration is None:
        raise ValueError("int8 inference needs the model's calibration patches; this model "
                         "has none (trained before they were kept, or exported)")
    with tempfile.TemporaryDirectory(prefix="cellloop-int8-") as tmp, _quiet_advice():
        raw, src, dst = (Path(tmp) / name for name in ("raw.onnx", "fp32.onnx", "int8.onnx"))
        raw.write_bytes(onnx_bytes(model))
        # fold batch norms into convolutions first, so that they are quantized as one
        quant_pre_process(str(raw), str(src), skip_symbolic_shape=True)
        quantize_static(str(src), str(dst), _Patches(model.calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return OnnxNet(dst.read_bytes(), threads)


def calibration_patches(sampler, n: int = CALIBRATION_PATCHES) -> np.ndarray:
    """(n, C, P, P) float16 normalised patches drawn (without augmentation) by a training
    `PatchSampler`, centre-cropped to at most CALIBRATION_SIZE; what `int8_session`
    measures activation ranges on."""
    x, _ = sampler.batch(n, augment=False)
    off = max(0, (x.shape[-1] - CALIBRATION_SIZE) // 2)
    return x[..., off:off + CALIBRATION_SIZE, off:off + CALIBRATION_SIZE].astype(np.float16)
