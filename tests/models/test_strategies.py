"""Selection strategies on fixed toy pools (power sampling is a distribution: its
frequencies are tested), and simulations counted in effort: region units, the corrections
cost, groups and the summary against cost."""
import numpy as np
import pytest

from models.simulation import regions_of, simulate, units_of
from models.simulation_plan import SimulationPlan, columns, figure, summarise
from models.strategies import CLASSES, ImageScore, Stratified, cluster, estimated_cells, \
    get_strategy, image_statistics, power_sample
from models.training import TrainConfig
from tests.models.conftest import TINY, disc_data


def _scores(values, embeddings=None):
    return {k: ImageScore(float(v), embedding=None if embeddings is None else
                          np.asarray(embeddings[k], np.float64))
            for k, v in enumerate(values)}


def test_every_strategy_has_one_interface():
    for name, cls in CLASSES.items():
        s = get_strategy(name, passes=3, seed=2)
        assert isinstance(s, cls) and s.name == name and s.description
        assert s.passes == 3 and s.seed == 2
    assert not get_strategy("random").needs_model and not get_strategy("stratified").needs_model
    assert get_strategy("ensemble").needs_ensemble
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("magic")


def test_power_sampling_draws_in_proportion_to_score_to_the_beta():
    scores = _scores([1.0, 2.0, 4.0, 8.0])
    rng = np.random.default_rng(0)
    trials = 20000
    firsts = np.bincount([power_sample(scores, 1, 1.0, rng)[0] for _ in range(trials)],
                         minlength=4) / trials
    assert firsts == pytest.approx(np.array([1, 2, 4, 8]) / 15, abs=0.012)
    # beta 2: ~ score squared
    firsts = np.bincount([power_sample(scores, 1, 2.0, rng)[0] for _ in range(trials)],
                         minlength=4) / trials
    assert firsts == pytest.approx(np.array([1, 4, 16, 64]) / 85, abs=0.012)
    # a batch is drawn without replacement, and the strategy is reproducible per seed
    batch = get_strategy("power", seed=3).select(scores, 4)
    assert sorted(batch) == [0, 1, 2, 3]
    assert get_strategy("power", seed=3).select(scores, 4) == batch


def test_power_sampling_is_not_top_k():
    # 20 near-equal top scores: top-k always takes the same; power sampling spreads
    scores = _scores([1.0] * 20 + [1.01] * 5)
    picks = {tuple(sorted(get_strategy("power", seed=s).select(scores, 5))) for s in range(10)}
    assert get_strategy("bald").select(scores, 5) == [20, 21, 22, 23, 24]
    assert len(picks) > 5


def test_stratified_takes_the_clusters_in_turn():
    # 30 dark images and 6 bright, textured ones: random would draw 1 bright in 6 on average
    rng = np.random.default_rng(0)
    dark = [rng.normal(10, 1, (64, 64)) for _ in range(30)]
    bright = [rng.normal(100, 1, (64, 64)) + 80 * (rng.random((64, 64)) > 0.5) for _ in range(6)]
    images = dark + bright
    s = get_strategy("stratified", seed=1)
    scores = {k: s.score([], img, key=k) for k, img in enumerate(images)}
    picked = s.select(scores, 4)
    assert len(picked) == len(set(picked)) == 4
    assert any(k >= 30 for k in picked[:2]), picked   # a bright one among the first two
    assert any(k < 30 for k in picked[:2]), picked


def test_image_statistics_do_not_depend_on_the_bit_depth():
    rng = np.random.default_rng(1)
    img8 = rng.integers(0, 256, (1, 80, 90)).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257
    assert image_statistics(img8) == pytest.approx(image_statistics(img16), abs=1e-6)


def test_coverage_picks_far_from_the_labelled_units():
    emb = {0: [0.0, 0.0], 1: [0.1, 0.0], 2: [10.0, 10.0], 3: [0.0, 0.2]}
    scores = _scores([0.9, 0.8, 0.1, 0.7], emb)
    labelled = [np.array([0.0, 0.1])]
    picked = get_strategy("coverage").select(scores, 2, labelled=labelled)
    assert picked[0] == 2          # the least uncertain, but farthest from everything labelled
    # without labelled embeddings it starts from the most uncertain
    assert get_strategy("coverage").select(scores, 2)[0] == 0


def test_regions_cover_the_image():
    boxes = regions_of((300, 520), 256)
    assert boxes == [(0, 0, 256, 256), (0, 256, 256, 512), (0, 264, 256, 520),
                     (44, 0, 300, 256), (44, 256, 300, 512), (44, 264, 300, 520)]
    covered = np.zeros((300, 520), bool)
    for y0, x0, y1, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert regions_of((100, 120), 256) == [(0, 0, 100, 120)]


def test_region_simulation_counts_corrections_against_cost(tmp_path):
    images, labels = disc_data(6, seed0=300, shape=(96, 96))
    groups = ["a", "b"] * 3
    plan = SimulationPlan(["random", "power"], initial=2, batch=2, rounds=1, seeds=[0],
                          test_fraction=0.34, passes=2, unit="region", region=48,
                          cost="corrections")
    pool = plan.split(len(images))[0]
    assert len(units_of(images, pool, plan)) == 4 * len(pool)
    cfg = TrainConfig(**TINY, epochs=1, steps_per_epoch=4, patience=5)
    rows = simulate(images, labels, plan, cfg, groups=groups)
    assert columns(rows)[-3:] == ["macro_f1", "f1_a", "f1_b"]
    for name in ("random", "power"):
        curve = [r for r in rows if r["strategy"] == name]
        assert [r["n_labelled"] for r in curve] == [2, 4]
        # no model before the first round: its regions' cells are all drawn (> 0 corrections)
        assert 0 < curve[0]["cost"] <= curve[1]["cost"]
        assert curve[0]["macro_f1"] == pytest.approx((curve[0]["f1_a"] + curve[0]["f1_b"]) / 2,
                                                     abs=1e-4)
    assert rows[0]["cost"] == rows[2]["cost"]          # the same initial regions per seed
    summary = {s["strategy"]: s for s in summarise(rows, target=0.0)}
    assert summary["random"]["metric"] == "macro_f1"
    assert summary["random"]["cost_to_target"] == rows[0]["cost"]   # reached at once
    fig = figure(rows, cost="corrections", unit="region")
    assert len(fig.layout.annotations) == 3            # macro, a, b panels
    with pytest.raises(ValueError, match="built-in model"):
        simulate(images, labels, SimulationPlan(["random"], initial=1, batch=1, rounds=1,
                                                start="builtin"), cfg)


def test_summary_cost_to_target_is_the_median_over_seeds():
    rows = []
    for seed, costs in ((0, [0, 30, 60]), (1, [0, 5, 200]), (2, [0, 10, 20])):
        for rnd, (c, f) in enumerate(zip(costs, [0.1, 0.5, 0.9])):
            rows.append({"strategy": "random", "seed": seed, "round": rnd, "n_labelled": rnd,
                         "cost": c, "f1": f if seed != 1 or rnd < 2 else 0.6})
    s = summarise(rows, target=0.85)[0]
    # seeds 0, 1, 2 reach 0.85 at 60, never and 20 (listed in seed order): the median (60)
    assert s["cost_to_target_per_seed"] == [60.0, None, 20.0]
    assert s["cost_to_target"] == 60.0
    s = summarise(rows, target=0.95)[0]
    assert s["cost_to_target"] is None


def test_summary_of_one_groups_f1():
    """The left-out group's own column can be summarised, with its own target."""
    rows = [{"strategy": "random", "seed": 0, "round": r, "n_labelled": r, "cost": 10 * r,
             "macro_f1": 0.5, "f1_he": f} for r, f in enumerate([0.2, 0.4, 0.8])]
    s = summarise(rows, target=0.7, metric="f1_he")[0]
    assert s["metric"] == "f1_he" and s["final_f1"] == 0.8 and s["cost_to_target"] == 20.0
    assert summarise(rows, target=0.7)[0]["cost_to_target"] is None    # macro-F1 stays 0.5


def test_summary_area_is_against_cost_over_the_range_both_cover():
    rows = []
    for name, points in (("random", [(0, 0.2), (100, 0.6)]),
                         ("power", [(0, 0.4), (50, 0.6), (200, 0.6)])):
        for rnd, (c, f) in enumerate(points):
            rows.append({"strategy": name, "seed": 0, "round": rnd, "n_labelled": rnd,
                         "cost": c, "f1": f})
    s = {x["strategy"]: x for x in summarise(rows)}
    # over cost 0..100: random's mean F1 0.4; power's (0.5 on 0..50, 0.6 on 50..100) 0.55
    assert s["random"]["auc"] == pytest.approx(0.4, abs=1e-3)
    assert s["power"]["auc"] == pytest.approx(0.55, abs=1e-3)
    assert s["power"]["auc_vs_random"] == pytest.approx(1.375, abs=1e-3)
    assert s["power"]["auc_vs_random_per_seed"] == {0: pytest.approx(1.375, abs=1e-3)}


def test_estimated_cells_counts_blobs_without_a_model():
    yy, xx = np.mgrid[:128, :128]
    image = np.zeros((128, 128), np.float32)
    centres = [(20 + 28 * i, 20 + 28 * j) for i in range(4) for j in range(4)]   # 16 nuclei
    for cy, cx in centres[:11]:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 200.0
    assert estimated_cells(image) == 11
    for cy, cx in centres[11:]:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 200.0
    assert estimated_cells(image) == 16


def test_stratified_cheap_can_count_at_full_resolution(monkeypatch):
    from models import count_baseline
    factors = []
    real = count_baseline.count_blobs
    monkeypatch.setattr(count_baseline, "count_blobs", lambda image, params, factor=1:
                        factors.append(factor) or real(image, params, factor))
    image = np.zeros((128, 128), np.float32)
    for options in ({}, {"count_factor": 1}):
        CLASSES["stratified-cheap"](**options).score([], image)
    assert factors == [2, 1]


def test_stratified_cheap_draws_fewer_cells_first_in_proportion():
    # one cluster (fewer than four units) of 1, 3 and 7 estimated cells: the first pick is
    # drawn ~ (1 + cells) ** -2, i.e. 16/21, 4/21, 1/21 over seeds (~ 1 / (1 + cells),
    # 4/7, 2/7, 1/7, with cost_beta=1)
    scores = {k: ImageScore(0.5, embedding=np.zeros(9), cost=c) for k, c in enumerate((1, 3, 7))}
    trials = 6000
    for beta, expected in ((None, [16, 4, 1]), (1.0, [4, 2, 1])):
        options = {} if beta is None else {"cost_beta": beta}
        firsts = np.bincount([get_strategy("stratified-cheap", seed=s, **options)
                              .select(scores, 1)[0] for s in range(trials)], minlength=3)
        assert firsts / trials == pytest.approx(np.array(expected) / sum(expected), abs=0.02)
    # plain stratified ignores the cost: its first pick is the lowest random value
    plain = {k: ImageScore(v, embedding=np.zeros(9), cost=c)
             for k, (v, c) in enumerate(((0.9, 0), (0.1, 9), (0.5, 3)))}
    assert get_strategy("stratified").select(plain, 3) == [1, 2, 0]


def test_stratified_cheap_still_takes_the_clusters_in_turn_and_scores_the_cost():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    dark = [rng.normal(10, 1, (64, 64)) for _ in range(30)]
    bright = []
    for n in range(6):                      # bright, textured images with n + 1 nuclei
        img = rng.normal(100, 1, (64, 64))
        for i in range(n + 1):
            img[(yy - 10 - 9 * i) ** 2 + (xx - 32) ** 2 <= 9] += 150
        bright.append(img)
    scores = {k: get_strategy("stratified-cheap").score([], img, key=k)
              for k, img in enumerate(dark + bright)}
    assert [scores[30 + n].cost for n in range(6)] == [n + 1 for n in range(6)]
    features = np.stack([scores[k].embedding for k in sorted(scores)])
    for seed in range(5):
        labels = cluster(features, Stratified.max_clusters, seed)
        n = len(set(labels.tolist()))
        assert n >= 2
        picked = get_strategy("stratified-cheap", seed=seed).select(scores, 2 * n)
        assert len(picked) == len(set(picked)) == 2 * n
        assert sorted(labels[picked[:n]]) == list(range(n))   # every cluster once first


def test_stratified_cheap_does_not_serve_units_without_cells_first():
    # no cell found (an empty tile) counts as the cluster's median (here of 20 and 1: 10.5),
    # not as 0 (one cluster: fewer than four units)
    scores = {k: ImageScore(0.5, embedding=np.zeros(9), cost=c) for k, c in enumerate((0, 20, 1))}
    trials = 4000
    firsts = np.bincount([get_strategy("stratified-cheap", seed=s).select(scores, 1)[0]
                          for s in range(trials)], minlength=3) / trials
    weights = np.array([11.5, 21, 2]) ** -2
    assert firsts == pytest.approx(weights / weights.sum(), abs=0.02)
    assert firsts[2] > 0.9


def test_a_simulation_scores_fixed_scores_once_and_the_others_every_round():
    from models.simulation import _select
    from models.strategies import Random

    class Counting(Random):
        calls = 0

        def score(self, models, image, key=0):
            type(self).calls += 1
            return super().score(models, image, key)

    class Rescored(Counting):
        fixed_scores = False
        calls = 0

    images = [np.zeros((8, 8), np.float32)] * 6
    units = [(i, None) for i in range(6)]
    for cls, expected in ((Counting, 6), (Rescored, 6 + 5 + 4)):
        strategy, memo, labelled = cls(seed=0), {}, []
        for _ in range(3):
            labelled += _select(strategy, None, images, units, labelled, 1, memo)
        assert cls.calls == expected and len(set(labelled)) == 3
