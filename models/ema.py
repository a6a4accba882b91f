"""Exponential moving average (EMA) of a network's weights, for evaluation and for the
weights kept: it smooths the step-to-step noise of small-batch training, so the epoch chosen
on a few validation images depends less on where the last steps happened to land."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class WeightAverage:
    """EMA of every floating-point entry of `net.state_dict()` (weights and BatchNorm
    statistics; integer counters are copied). The decay warms up as min(decay,
    (1 + t) / (10 + t)) so the first steps do not pull the average towards the start."""

    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay, self.updates = decay, 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value.detach(), 1.0 - decay)
            else:
                self.state[key].copy_(value)

    @contextlib.contextmanager
    def applied(self, net: nn.Module):
        """Within the block `net` holds the averaged weights; the trained ones come back
        after it."""
        current = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.state)
        try:
            yield
        finally:
            net.load_state_dict(current)
