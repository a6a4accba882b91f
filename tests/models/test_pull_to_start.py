"""Fine-tuning with `TrainConfig.pull` (decoupled L2-SP): the weights stay near the start."""
import pytest
import torch

from models.training import TrainConfig, TrainingError, _PullToStart, train_model
from tests.models.conftest import TINY, disc_data


def _distance(a, b) -> float:
    return float(sum(((p - q) ** 2).sum() for p, q in zip(a.module.parameters(),
                                                            b.module.parameters())) ** 0.5)


def test_one_pull_moves_each_weight_back_by_lr_times_pull():
    net = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    pull = _PullToStart(net, pull=10.0)
    with torch.no_grad():
        net.weight.fill_(3.0)
    pull(net, lr=0.01)                                # 3 - 0.1 * (3 - 1)
    assert torch.allclose(net.weight, torch.full_like(net.weight, 2.8))
    pull(net, lr=1.0)                                 # lr x pull above 1: back to the start
    assert torch.allclose(net.weight, torch.ones_like(net.weight))


def test_fine_tuning_with_a_pull_stays_nearer_the_start_model():
    images, labels = disc_data(3)
    start = train_model(images, labels, config=TrainConfig(**TINY, epochs=1, steps_per_epoch=4,
                                                           seed=1, calibrate=False)).model
    new_images, new_labels = disc_data(2, seed0=5)
    tuned = {}
    for pull in (0.0, 50.0):                 # lr x pull = 0.25: pulled, not reset
        cfg = TrainConfig(**{**TINY, "lr": 5e-3}, epochs=2, steps_per_epoch=6, seed=2,
                          calibrate=False, pull=pull)
        tuned[pull] = train_model(new_images, new_labels, config=cfg, init=start).model
    free, pulled = _distance(tuned[0.0], start), _distance(tuned[50.0], start)
    assert free > 0 and pulled > 0
    assert pulled < 0.5 * free


def test_a_pull_without_a_start_model_changes_nothing_and_bad_pulls_are_refused():
    images, labels = disc_data(2)
    base = dict(**TINY, epochs=1, steps_per_epoch=3, seed=4, calibrate=False)
    a = train_model(images, labels, config=TrainConfig(**base)).model
    b = train_model(images, labels, config=TrainConfig(**base, pull=50.0)).model
    assert _distance(a, b) == 0.0
    assert b.meta["train_config"]["pull"] == 0.0          # the pull it trained with: none
    with pytest.raises(TrainingError, match="pull must be 0 or more"):
        train_model(images, labels, config=TrainConfig(**base, pull=-1.0))
    with pytest.raises(TrainingError, match="pull must be 0 or more"):
        train_model(images, labels, config=TrainConfig(**base, pull=float("nan")))
    with pytest.raises(TrainingError, match=r"pull \(500\) times the learning rate \(0.002\)"):
        train_model(images, labels, config=TrainConfig(**base, pull=500.0))
