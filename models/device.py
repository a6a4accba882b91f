"""Where and how to run: CUDA with bf16 autocast when present; on CPUs, bf16 autocast with
channels_last only where the CPU has native bf16 (AVX512-BF16 or AMX), else fp32 with
channels_last. CUDA is only touched when a function here is called, never at import."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch

from models import settings


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype | None      # autocast dtype, None = fp32
    channels_last: bool
    engine: str = "torch"          # "torch", "onnxruntime" (fp32) or "onnxruntime-int8" (CPU)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def tile_batch(self) -> int:
        """Tiles per forward pass: several on a GPU; one on a CPU, where 4 measured slower
        with torch (0.55 vs 0.84 MP/s, fp32, 2 cores) and about 5% faster with ONNX Runtime
        but with ~650 MiB more memory for its buffers (docs/benchmarks.md)."""
        return 8 if self.device.type == "cuda" else 1

    @property
    def name(self) -> str:
        prec = "bf16" if self.dtype == torch.bfloat16 else "fp32"
        if self.engine == "onnxruntime-int8":
            return f"{self.device.type}/int8/onnxruntime"
        if self.engine == "onnxruntime":
            return f"{self.device.type}/{prec}/onnxruntime"
        return f"{self.device.type}/{prec}{'/channels_last' if self.channels_last else ''}"


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def select_inference_runtime(prefer: str = "auto", int8: bool = False) -> Runtime:
    """For a trained model that will not change: on CPUs without native bf16, ONNX Runtime
    (measured faster than torch eager here, see docs/benchmarks.md), quantized to int8 when
    `prefer` is "int8" and the model can be (`int8`: it has calibration patches); otherwise
    as `select_runtime`. "auto" means the process setting (`models.settings`)."""
    if prefer == "auto":
        prefer = settings.inference_precision
    runtime = select_runtime("auto" if prefer == "int8" else prefer)
    if runtime.device.type == "cpu" and runtime.dtype is None and onnxruntime_available():
        engine = "onnxruntime-int8" if int8 and prefer == "int8" else "onnxruntime"
        return Runtime(runtime.device, None, False, engine)
    return runtime


def select_runtime(prefer: str = "auto", device: str | None = None) -> Runtime:
    """prefer: "auto", "fp32" or "bf16"; device: None (auto), "cpu" or "cuda"."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if prefer == "fp32":
        return Runtime(dev, None, dev.type == "cpu")
    if prefer == "bf16" or dev.type == "cuda" or cpu_has_native_bf16():
        return Runtime(dev, torch.bfloat16, True)
    return Runtime(dev, None, True)


def set_threads(n: int) -> None:
    if n and n > 0:
        torch.set_num_threads(n)
