"""Uncertainty measures in closed form, MC dropout equal to the naive T passes, the
strategies' ranking and batch picking, and a short simulation on synthetic discs."""
import numpy as np
import pytest
import torch

from models import uncertainty
from models.persist import model_from_bytes, model_to_bytes
from models.simulation import COLUMNS, SimulationPlan, figure, simulate, summarise
from models.strategies import ImageScore, get_strategy, k_center_greedy
from models.training import TrainConfig
from models.unet import UNet, mc_probabilities, mc_probabilities_naive
from tests.models.conftest import TINY, disc_data

LN2 = float(np.log(2))


def test_entropy_and_bald_in_closed_form():
    agree = np.array([[[0.5], [0.5]]] * 4)                  # (T=4, K=2, 1 pixel)
    assert uncertainty.predictive_entropy(agree)[0] == pytest.approx(LN2)
    assert uncertainty.mutual_information(agree)[0] == pytest.approx(0.0, abs=1e-9)
    disagree = np.array([[[1.0], [0.0]], [[0.0], [1.0]]] * 2)
    assert uncertainty.predictive_entropy(disagree)[0] == pytest.approx(LN2)
    assert uncertainty.expected_entropy(disagree)[0] == pytest.approx(0.0, abs=1e-6)
    assert uncertainty.mutual_information(disagree)[0] == pytest.approx(LN2)
    sure = np.array([[[1.0], [0.0]]] * 3)
    assert uncertainty.predictive_entropy(sure)[0] == pytest.approx(0.0, abs=1e-6)
    # three classes, uniform: ln 3; torch and numpy agree
    uniform = np.full((2, 3, 1), 1 / 3)
    assert uncertainty.predictive_entropy(uniform)[0] == pytest.approx(np.log(3))
    assert float(uncertainty.predictive_entropy(torch.tensor(uniform))[0]) == pytest.approx(
        np.log(3))


def test_mc_dropout_equals_naive_passes():
    torch.manual_seed(0)
    net = UNet(in_channels=1, width=8, depth=2, dropout=0.3).eval()
    x = torch.randn(2, 1, 32, 32)
    torch.manual_seed(7)
    fast = mc_probabilities(net, x, 6)
    torch.manual_seed(7)
    naive = mc_probabilities_naive(net, x, 6)
    assert fast.shape == (6, 2, 3, 32, 32)
    torch.testing.assert_close(fast, naive, rtol=1e-4, atol=1e-5)     # sample for sample
    # and the samples really vary (dropout is on), in distribution too with other seeds
    assert fast.std(0).mean() > 1e-4
    many_fast = mc_probabilities(net, x, 200)
    many_naive = mc_probabilities_naive(net, x, 200)
    torch.testing.assert_close(many_fast.mean(0), many_naive.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(many_fast.std(0), many_naive.std(0), atol=0.02, rtol=0)
    assert not net.training and not net.head.drop2.training            # modes restored


def test_mc_dropout_on_a_trained_model_onnx_and_torch_agree(trained):
    model = trained.model
    image = disc_data(1, seed0=50)[0][0]
    u = uncertainty.mc_dropout(model, image, passes=8, seed=3)
    assert u.mean.shape == (3, 96, 96) and u.entropy.shape == (96, 96)
    assert np.allclose(u.mean.sum(0), 1, atol=1e-4)
    # mutual information is part of the predictive entropy, and dropout makes the passes differ
    mi = u.mutual_information
    assert (mi <= u.entropy + 1e-5).all() and mi.max() > 0 and u.embedding.shape == (8,)
    frozen = model_from_bytes(model_to_bytes(model))      # as loaded by the app
    with frozen.running("fp32") as onnx:                    # the hidden part in ONNX Runtime
        assert onnx.runtime().engine == "onnxruntime" or torch.cuda.is_available()
        w = uncertainty.mc_dropout(onnx, image, passes=8, seed=3)
    with model.running("fp32", "cpu") as torch_fp32:        # all in torch
        v = uncertainty.mc_dropout(torch_fp32, image, passes=8, seed=3)
    np.testing.assert_allclose(w.entropy, v.entropy, atol=1e-3)
    np.testing.assert_allclose(u.entropy, v.entropy, atol=0.05)   # the default engine
    # noise the model never saw is less certain than the discs it learned
    noise = np.random.default_rng(0).normal(500, 300, (96, 96)).clip(0).astype(np.uint16)
    assert uncertainty.mc_dropout(model, noise).score("entropy") > u.score("entropy")


def test_strategies_rank_and_pick():
    rnd = get_strategy("random", seed=4)
    a, b = rnd.score([], None, key=1).value, rnd.score([], None, key=1).value
    assert a == b and a != rnd.score([], None, key=2).value
    scores = {i: ImageScore(v) for i, v in enumerate([0.1, 0.9, 0.5, 0.7])}
    assert get_strategy("entropy").select(scores, 2) == [1, 3]
    # diversity: three tight clusters of high scores; one pick per cluster
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], float)
    emb = {i: centres[i % 3] + rng.normal(0, 0.01, 2) for i in range(9)}
    scores = {i: ImageScore(1.0 - i * 0.01, embedding=emb[i]) for i in range(9)}
    picked = get_strategy("diversity").select(scores, 3)
    assert sorted(i % 3 for i in picked) == [0, 1, 2]
    assert get_strategy("entropy").select(scores, 3) == [0, 1, 2]
    assert k_center_greedy(np.array([[0.0], [1.0], [5.0]]), 2) == [0, 2]
    with pytest.raises(ValueError):
        get_strategy("magic")


def test_ensemble_strategy_needs_members(trained):
    image = disc_data(1, seed0=60)[0][0]
    with pytest.raises(ValueError):
        uncertainty.ensemble([trained.model], image)
    same = uncertainty.ensemble([trained.model, trained.model], image)
    assert same.mutual_information.max() == pytest.approx(0.0, abs=1e-5)   # no disagreement


def test_short_simulation_writes_curves():
    images, labels = disc_data(12, seed0=100, shape=(64, 64))
    plan = SimulationPlan(["random", "entropy"], initial=2, batch=2, rounds=2, seeds=[0],
                          test_fraction=0.25, passes=4)
    cfg = TrainConfig(**TINY, epochs=3, steps_per_epoch=8, patience=5)
    rows = simulate(images, labels, plan, cfg)
    assert len(rows) == 2 * 3 and set(rows[0]) == set(COLUMNS)
    for name in ("random", "entropy"):
        curve = [r for r in rows if r["strategy"] == name]
        assert [r["n_labelled"] for r in curve] == [2, 4, 6]
        assert all(0.0 <= r["f1"] <= 1.0 and 0.0 <= r["dice"] <= 1.0 for r in curve)
    # the same initial images for both strategies: round 0 is identical
    assert rows[0]["f1"] == rows[3]["f1"]
    summary = summarise(rows)
    assert {s["strategy"] for s in summary} == {"random", "entropy"}
    assert [s for s in summary if s["strategy"] == "random"][0]["auc_vs_random"] == 1.0
    fig = figure(rows)
    assert len(fig.data) == 4 and fig.layout.xaxis.title.text == "labelled images"
    with pytest.raises(ValueError, match="too few"):
        simulate(images, labels, SimulationPlan(["random"], initial=5, batch=5, rounds=3),
                 cfg)
