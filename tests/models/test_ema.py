"""The weight average (models.ema) and training with it."""
import numpy as np
import pytest
import torch
from torch import nn

from models.ema import WeightAverage
from models.training import TrainConfig, train_model
from tests.models.conftest import TINY, disc_data


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_average_follows_the_warmed_up_decay_and_copies_counters():
    net = _net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked += 5
    ema.update(net)                              # first decay: min(0.9, 2 / 11)
    d = 2 / 11
    assert torch.allclose(ema.state["0.weight"], start["0.weight"] + (1 - d))
    assert torch.equal(ema.state["0.bias"], start["0.bias"])
    assert int(ema.state["1.num_batches_tracked"]) == 5
    for _ in range(200):                          # the weights stay: the average reaches them
        ema.update(net)
    assert torch.allclose(ema.state["0.weight"], net[0].weight, atol=1e-6)


def test_applied_swaps_in_the_average_and_restores_the_trained_weights():
    net = _net()
    ema = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    trained = net[0].weight.clone()
    with ema.applied(net):
        assert torch.equal(net[0].weight, ema.state["0.weight"])
        assert not torch.equal(net[0].weight, trained)
    assert torch.equal(net[0].weight, trained)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(net, decay=1.0)


def test_training_keeps_the_averaged_weights():
    images, labels = disc_data(3)
    cfg = TrainConfig(**TINY, epochs=2, steps_per_epoch=5, seed=3, ema=0.9, calibrate=False)
    a = train_model(images, labels, config=cfg)
    b = train_model(images, labels, config=cfg)
    plain = train_model(images, labels, config=TrainConfig(**TINY, epochs=2, steps_per_epoch=5,
                                                           seed=3, calibrate=False))
    wa, wb = a.model.module.head.out.weight, b.model.module.head.out.weight
    assert torch.equal(wa, wb)                              # still deterministic
    assert not torch.equal(wa, plain.model.module.head.out.weight)
    assert np.isfinite(a.metrics["f1"])
