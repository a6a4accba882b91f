"""Process-wide choices for the model code that the app sets from its configuration
(without importing torch, which the web process loads only when a model is used)."""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "int8")
# "auto": the default engine (bf16 on GPUs and CPUs with native bf16, else fp32 ONNX
# Runtime); "fp32": full precision everywhere; "int8": quantized ONNX Runtime on CPUs
# without native bf16 (models/quantize.py), opt-in: faster, slightly less accurate
inference_precision = "auto"


def set_inference_precision(value: str) -> None:
    global inference_precision
    if value not in PRECISIONS:
        raise ValueError(f"inference precision must be one of {', '.join(PRECISIONS)}")
    inference_precision = value
