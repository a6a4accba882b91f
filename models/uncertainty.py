"""How unsure a model is about an image: Monte Carlo dropout and ensembles.

Per-pixel measures from T probability samples p_t (T, K, ...):
- predictive entropy  H[mean_t p_t]                       (total uncertainty)
- expected entropy    mean_t H[p_t]                       (aleatoric part)
- mutual information  H[mean_t p_t] - mean_t H[p_t]       (BALD: model disagreement)
An image's score is the mean of a map over its pixels. The embedding of an image (for
diversity-aware selection) is the spatial mean of the deterministic features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.inference import network_input
from models.tiling import tiled_apply

EPS = 1e-10


def entropy(p, axis: int = 0):
    """Shannon entropy (nats) along `axis` of probabilities (numpy or torch)."""
    if isinstance(p, torch.Tensor):
        return -(p * torch.log(p.clamp_min(EPS))).sum(dim=axis)
    return -(p * np.log(np.maximum(p, EPS))).sum(axis=axis)


def predictive_entropy(samples):
    """(T, K, ...) samples -> (...) entropy of the mean prediction."""
    return entropy(samples.mean(0), axis=0)


def expected_entropy(samples):
    return entropy(samples, axis=1).mean(0)


def mutual_information(samples):
    """BALD: predictive entropy minus expected entropy, (T, K, ...) -> (...)."""
    return predictive_entropy(samples) - expected_entropy(samples)


@dataclass
class Uncertainty:
    mean: np.ndarray               # (K, Y, X) mean class probabilities
    entropy: np.ndarray            # (Y, X) predictive entropy
    mutual_information: np.ndarray  # (Y, X)
    embedding: np.ndarray          # (F,) image descriptor
    deterministic: np.ndarray | None = None   # (K, Y, X) dropout-off probabilities, if asked

    def score(self, measure: str) -> float:
        if measure == "entropy":
            return float(self.entropy.mean())
        if measure in ("bald", "mutual_information", "ensemble"):
            return float(self.mutual_information.mean())
        raise ValueError(f"unknown uncertainty measure {measure!r}")


def _summarise(logits: torch.Tensor) -> torch.Tensor:
    """(T, N, K, h, w) sampled logits -> (N, K + 2, h, w) channels: mean probabilities,
    predictive entropy, mutual information (log-softmax once; no separate log of p)."""
    logp = torch.log_softmax(logits, dim=2)
    p = logp.exp()
    expected = (p * logp).sum(2).mean(0).neg_()
    mean = p.mean(0)
    pred = (mean * mean.clamp_min(EPS).log()).sum(1).neg_()
    return torch.cat([mean, pred[:, None], (pred - expected)[:, None]], dim=1)


def mc_dropout(model, image: np.ndarray, passes: int = 8, seed: int | None = 0,
               tile: int = 512, overlap: int = 64, batch: int | None = None,
               stride: int = 2, deterministic: bool = False) -> Uncertainty:
    """MC-dropout uncertainty of a `SegmentationModel` (torch weights needed) on a (C, Y, X)
    or (Y, X) image (through the model's input mapping, if it has one, as in prediction):
    the deterministic part once per tile (ONNX Runtime where that is the
    faster engine), the stochastic output layer `passes` times.

    The per-pixel statistics are computed on every `stride`-th pixel in each direction (a
    systematic sample; stride 2 = a quarter of the pixels, whose mean is an unbiased estimate
    of the full image's) and repeated back to full size: the T samples and their entropies
    would otherwise cost more than the network. stride=1 computes every pixel.

    `deterministic`: also return the dropout-off probabilities (the plain prediction) from
    the same features, so a suggestion and its uncertainty cost one pass of the network."""
    if model.module is None or not hasattr(model.module, "hidden"):
        raise ValueError("Monte Carlo dropout needs a CellLoop model with its weights "
                         "(.cellloop), not an exported file.")
    net = model.module
    hidden_fn = _hidden_fn(model)
    embedding: list = []
    generator_seed = seed
    k = model.n_classes

    def fn(x: torch.Tensor) -> torch.Tensor:
        nonlocal generator_seed
        with torch.no_grad():
            # contiguous: the same memory layout from every engine
            hidden = hidden_fn(x).float().contiguous().to(net.head.out.weight.device)
            if generator_seed is not None:
                torch.manual_seed(generator_seed)
                generator_seed += 1
            embedding.append((hidden.mean(dim=(2, 3)).sum(0), hidden.shape[0]))
            grid = hidden[:, :, ::stride, ::stride].contiguous() if stride > 1 else hidden
            summary = _summarise(net.head.samples(grid, passes).float())
            if stride > 1:
                summary = summary.repeat_interleave(stride, 2).repeat_interleave(stride, 3)
                summary = summary[:, :, :hidden.shape[2], :hidden.shape[3]]
            if deterministic:
                out_layer = net.head.out
                plain = torch.softmax(torch.nn.functional.conv2d(
                    hidden, out_layer.weight.to(hidden.dtype),
                    out_layer.bias.to(hidden.dtype)).float(), dim=1)
                summary = torch.cat([summary, plain], dim=1)
            return summary

    out = tiled_apply(model.prepare(network_input(model, image)), fn,
                      k + 2 + (k if deterministic else 0), tile=tile, overlap=overlap,
                      batch=batch or model.runtime().tile_batch, multiple=model.multiple)
    features = sum(e[0] for e in embedding) / sum(e[1] for e in embedding)
    return Uncertainty(out[:k], out[k], np.maximum(out[k + 1], 0.0),
                       features.float().cpu().numpy(), out[k + 2:] if deterministic else None)


def _hidden_fn(model):
    """The deterministic features (N, F, h, w): ONNX Runtime on CPUs where it is the faster
    engine (as for plain prediction), else torch on the model's device."""
    runtime = model.runtime()
    net = model.module
    if runtime.engine.startswith("onnxruntime"):      # the fp32 hidden part, also for int8
        if getattr(model, "_hidden_session", None) is None:
            from models.engines import onnx_session_for
            model._hidden_session = onnx_session_for(model, "hidden")
        return model._hidden_session

    def torch_hidden(x: torch.Tensor) -> torch.Tensor:
        x = x.to(runtime.device)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            return net.hidden(x).float()
    return torch_hidden


def ensemble(models: list, image: np.ndarray, tile: int = 512, overlap: int = 64
             ) -> Uncertainty:
    """Disagreement of an ensemble (members trained with different seeds): the members'
    softmax outputs are the samples; mutual information measures their disagreement."""
    if len(models) < 2:
        raise ValueError("An ensemble needs at least two models.")
    probs = np.stack([m.probabilities(network_input(m, image), tile=tile, overlap=overlap)
                      for m in models])
    mean = probs.mean(0)
    pred = entropy(mean, axis=0)
    mi = np.maximum(pred - entropy(probs, axis=1).mean(0), 0.0)
    # descriptor: class-probability histogram summary (members share no feature space)
    embedding = np.concatenate([mean.mean(axis=(1, 2)), mean.std(axis=(1, 2))])
    return Uncertainty(mean, pred, mi, embedding)
