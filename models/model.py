"""`SegmentationModel`: a network plus what it takes to use it (channels, normalisation,
classes, post-processing) and the engine it runs on.

The other model modules build on this one and it imports none of them that import it back:
`models.persist` and `models.export` load and save it, `models.inference` predicts with it,
`models.engines` and `models.quantize` make the ONNX Runtime sessions it may run on.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from models.data import normalise
from models.device import Runtime, select_inference_runtime, select_runtime
from models.engines import onnx_session_for
from models.instances import instances_from_probs
from models.quantize import int8_session
from models.tiling import tiled_apply


class ModelInputError(ValueError):
    """The image does not fit the model (e.g. wrong number of channels)."""


class ModelFileError(ValueError):
    """The model file cannot be used; the message says why."""


class SegmentationModel:
    """A network plus everything needed to use it: channels, normalisation, classes.

    `net` maps a normalised (N, C, H, W) float tensor to (N, K, H, W) logits."""

    def __init__(self, net: Callable, meta: dict, module: torch.nn.Module | None = None,
                 frozen: bool = False, calibration: np.ndarray | None = None):
        self.net = net
        self.module = module                 # the torch module, when there is one
        self.meta = meta
        self.calibration = calibration       # normalised training patches (models.quantize)
        self.frozen = frozen                 # weights final: faster engines may be used
        self._runtime: Runtime | None = None
        self._engine_net: Callable | None = None

    @property
    def in_channels(self) -> int:
        return int(self.meta["architecture"]["in_channels"])

    @property
    def n_classes(self) -> int:
        return int(self.meta["architecture"]["n_classes"])

    @property
    def multiple(self) -> int:
        return 2 ** int(self.meta["architecture"].get("depth", 4))

    @property
    def ran_on(self) -> str | None:
        """The name of the runtime the model has run on (`Runtime.name`), None before it
        ran: reading it chooses nothing and builds no engine."""
        return self._runtime.name if self._runtime is not None else None

    def runtime(self, prefer: str = "auto", device: str | None = None) -> Runtime:
        if self._runtime is None or prefer != "auto" or device is not None:
            if self.frozen and self.module is not None and device is None:
                self._runtime = select_inference_runtime(
                    prefer, int8=self.calibration is not None)
            else:
                self._runtime = select_runtime(prefer, device)
            self._engine_net = None
            if self._runtime.engine == "onnxruntime":
                self._engine_net = onnx_session_for(self)
            elif self._runtime.engine == "onnxruntime-int8":
                self._engine_net = int8_session(self)
            if self.module is not None:
                self.module.to(self._runtime.device)
                self.module.to(memory_format=torch.channels_last if self._runtime.channels_last
                               else torch.contiguous_format)
                self.module.eval()
        return self._runtime

    @contextlib.contextmanager
    def running(self, prefer: str, device: str | None = None):
        """Run on another engine for a while, e.g. torch fp32 to compare the shipped engine
        with; the default is chosen again afterwards."""
        self.runtime(prefer, device)
        try:
            yield self
        finally:
            self._runtime = self._engine_net = None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """(C, Y, X) or (Y, X) raw image -> normalised (C, Y, X) float32."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ModelInputError(f"expected a (C, Y, X) image, got shape {image.shape}")
        if image.shape[0] != self.in_channels:
            raise ModelInputError(f"this model takes {self.in_channels} channel(s) "
                                  f"({', '.join(self.meta.get('channels', [])) or 'unnamed'}); "
                                  f"the image has {image.shape[0]}")
        norm = self.meta.get("normalisation", {})
        return normalise(image, norm.get("low", 1.0), norm.get("high", 99.8))

    @torch.no_grad()
    def logits_fn(self, x: torch.Tensor) -> torch.Tensor:
        rt = self.runtime()
        if self._engine_net is not None:
            return self._engine_net(x)
        x = x.to(rt.device)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with rt.autocast():
            return self.net(x).float()

    @torch.no_grad()
    def probabilities(self, image: np.ndarray, tile: int = 512, overlap: int = 64,
                      batch: int | None = None, normalised: bool = False) -> np.ndarray:
        """(K, Y, X) class probabilities of one 2-D image; `batch` tiles per forward pass
        (default: what suits the runtime, `Runtime.tile_batch`)."""
        x = image if normalised else self.prepare(image)
        batch = batch or self.runtime().tile_batch
        return tiled_apply(x, lambda t: F.softmax(self.logits_fn(t), dim=1), self.n_classes,
                           tile=tile, overlap=overlap, batch=batch, multiple=self.multiple)

    def instances(self, probs: np.ndarray) -> np.ndarray:
        """Instance labels from (K, Y, X) probabilities with this model's post-processing
        (foreground threshold, seed splitting and smallest cell; chosen on validation
        images when the model was trained, see models.calibration)."""
        if self.meta.get("kind", "instance") == "semantic":
            return probs.argmax(0).astype(np.uint16)
        post = self.meta.get("postprocess", {})
        return instances_from_probs(probs, min_size=int(post.get("min_size", 12)),
                                    fg_threshold=float(post.get("fg_threshold", 0.5)),
                                    split=float(post.get("split", 0.0)))
