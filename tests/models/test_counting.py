"""Counting from points (models.counting, models.density, models.count_baseline): tiny U-Nets
trained for a few seconds on drawn discs with known centres."""
import io

import numpy as np
import pytest
import torch
from skimage.draw import disk

from models import count_baseline
from models.cancel import Cancelled
from models.counting import CountingError, CountingModel, CountingParams, count_image, \
    counter_from_bytes, counter_to_bytes, is_counting_model, load_counter, masked_loss, \
    points_for, save_counter, train_counter
from models.density import centre_map, density_map, find_peaks, peak_height, strongest_peaks
from models.model import ModelFileError

TINY = dict(batch=4, patch=48, width=8, depth=2, sigma=3.0, lr=3e-3, threads=1)  # 1 thread:
# on a busy 2-core machine 2 threads ran 10-25x slower (OpenMP contention)


def discs(shape=(96, 96), n=8, seed=0, r=5, spacing=3.0):
    """(image, centres): n bright discs of radius r on a dark noisy background, centres
    (y, x) at least spacing * r apart."""
    rng = np.random.default_rng(seed)
    mask, centres = np.zeros(shape, bool), []
    while len(centres) < n:
        y, x = rng.integers(r + 3, shape[0] - r - 3), rng.integers(r + 3, shape[1] - r - 3)
        if all((y - a) ** 2 + (x - b) ** 2 >= (spacing * r) ** 2 for a, b in centres):
            centres.append((int(y), int(x)))
            mask[disk((y, x), r, shape=shape)] = True
    image = rng.normal(400, 80, shape) + mask * 2800
    return np.clip(image, 0, 65535).astype(np.uint16), np.array(centres, float)


def matched(found: np.ndarray, truth: np.ndarray, radius: float = 3.0) -> int:
    """Ground-truth centres with a found point within `radius` px."""
    if not len(found):
        return 0
    d = np.hypot(*(truth[:, None, :] - found[None, :, :]).transpose(2, 0, 1))
    return int((d.min(1) <= radius).sum())


@pytest.fixture(scope="module")
def counter():
    pairs = [discs(seed=s) for s in range(4)]
    return train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                         params=CountingParams(steps=160, target="density", **TINY))


def test_density_map_integrates_to_the_number_of_points():
    pts = np.array([[0, 0], [10, 20], [47.4, 30.2], [200, 5]])       # the last is outside
    d = density_map(pts, (48, 64), 3.0)
    assert d.sum() == pytest.approx(3.0, abs=1e-4)                 # edge point reflects
    assert d[10, 20] == pytest.approx(peak_height(3.0), rel=0.02)
    peaks, values = find_peaks(d, 0.5 * peak_height(3.0), 3)
    assert sorted(map(tuple, peaks.tolist())) == [(0, 0), (10, 20), (47, 30)]
    assert np.all(values >= 0.5 * peak_height(3.0))


def test_a_briefly_trained_model_counts_the_discs_exactly(counter):
    for seed in (100, 101):
        image, centres = discs(seed=seed)
        result = count_image(counter, image, mc_samples=8)
        assert abs(result.count - len(centres)) <= 0.5, result.count
        assert result.n_points == len(centres)
        assert matched(result.points, centres) == len(centres)
        assert result.confidence.shape == (len(centres),)
        assert np.all((result.confidence >= 0) & (result.confidence <= 1))
        assert result.low <= result.count <= result.high
        assert len(result.samples) == 8


def test_a_count_gives_its_points_rounded_half_up():
    assert [points_for(c) for c in (-0.4, 0.49, 0.5, 2.5, 3.49)] == [0, 0, 1, 3, 3]


def test_the_strongest_peaks_are_taken_highest_first():
    d = density_map([[10, 10]], (64, 64), 3.0) + 0.8 * density_map([[10, 40]], (64, 64), 3.0) \
        + 0.5 * density_map([[40, 25]], (64, 64), 3.0)           # three heights
    peaks, values = strongest_peaks(d, 2, 0.01 * peak_height(3.0), 3)
    assert peaks.tolist() == [[10, 10], [10, 40]] and values[0] > values[1]
    assert len(strongest_peaks(d, 10, 0.01 * peak_height(3.0), 3)[0]) == 3
    assert len(strongest_peaks(d, 0, 0.01 * peak_height(3.0), 3)[0]) == 0


def test_the_points_agree_with_the_count_even_when_the_threshold_does_not_carry(counter):
    """A threshold chosen on the training images can sit above every peak of a new image (a
    model reading another stain found a third of the cells); the count's highest peaks do
    not depend on it. Models saved before the rule keep the threshold."""
    image, centres = discs(seed=102)
    assert counter.point_rule == "count"
    high = CountingModel(counter.module, {**counter.meta,
                                          "peaks": {**counter.meta["peaks"], "threshold": 50.0}})
    by_count = count_image(high, image, mc_samples=0)
    assert by_count.n_points == points_for(by_count.count) == len(centres)
    assert matched(by_count.points, centres) == len(centres)
    # under the threshold that did not carry, the points are still not unsure for that alone
    assert np.all(count_image(high, image, mc_samples=8).confidence >= 0.5)
    region = np.zeros(image.shape, bool)
    region[:, :48] = True                                          # the left half
    inside = count_image(high, image, mc_samples=0, region=region)
    assert inside.n_points == points_for(inside.count) == int((centres[:, 1] < 48).sum())
    assert region[inside.points[:, 0], inside.points[:, 1]].all()
    old = {**high.meta["peaks"]}
    del old["select"]
    by_threshold = count_image(CountingModel(counter.module, {**high.meta, "peaks": old}),
                               image, mc_samples=0)
    assert by_threshold.n_points == 0 and by_threshold.count == pytest.approx(by_count.count)
    with pytest.raises(CountingError, match="points must be one of"):
        train_counter([image], [centres], params=CountingParams(steps=1, points="all", **TINY))


def test_the_loss_ignores_everything_outside_the_region():
    pred = torch.rand(2, 1, 16, 16, requires_grad=True)
    target = torch.rand(2, 1, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., :8] = 1
    loss = masked_loss(pred, target, mask, scale=10.0, count_weight=0.5)
    loss.backward()
    assert torch.all(pred.grad[..., 8:] == 0) and torch.any(pred.grad[..., :8] != 0)
    changed = pred.detach().clone()
    changed[..., 8:] += 5.0                                        # outside: no effect
    assert masked_loss(changed, target, mask, 10.0, 0.5) == pytest.approx(loss.item())
    changed[..., 0] += 1.0                                         # inside: it counts
    assert masked_loss(changed, target, mask, 10.0, 0.5) > loss.item() + 0.1


def region_data(seed: int):
    """A 96x96 image of 12 discs; only the top-left 48x48 quarter is annotated, and only
    its discs are clicked: most cells lie outside the region, unclicked."""
    image, centres = discs(n=12, seed=seed, spacing=2.6)
    region = np.zeros(image.shape, bool)
    region[:48, :48] = True
    inside = centres[(centres[:, 0] < 48) & (centres[:, 1] < 48)]
    return image, inside, region, centres


@pytest.mark.parametrize("target", ["centres", "density"])
def test_cells_outside_the_annotated_region_are_not_taught_as_background(target):
    data = [region_data(s) for s in (20, 21, 22, 23, 24, 25)]
    assert sum(len(d[1]) for d in data) >= 6                       # some clicks inside
    assert sum(len(d[3]) - len(d[1]) for d in data) > 2 * sum(len(d[1]) for d in data)
    model = train_counter([d[0] for d in data], [d[1] for d in data],
                          regions=[d[2] for d in data],
                          params=CountingParams(steps=160, target=target, **TINY))
    image, centres = discs(seed=200)
    result = count_image(model, image, mc_samples=0)
    # ignoring the region would teach the many unclicked discs as "no cell" (a count near a
    # third of the truth, measured); with the region the count stays near the truth
    assert result.count > 0.75 * len(centres), result.count
    assert matched(result.points, centres) >= len(centres) - 1


def test_save_and_load_round_trip(counter, tmp_path):
    image, _ = discs(seed=7)
    before = count_image(counter, image, mc_samples=4, seed=3)
    sha = save_counter(counter, tmp_path / "counter.cellloop")
    loaded = load_counter(tmp_path / "counter.cellloop", expected_sha256=sha)
    assert isinstance(loaded, CountingModel) and loaded.meta["kind"] == "counting"
    after = count_image(loaded, image, mc_samples=4, seed=3)
    assert after.count == pytest.approx(before.count, rel=1e-5)
    assert np.array_equal(after.points, before.points)
    assert np.allclose(after.samples, before.samples, rtol=1e-5)
    assert loaded.meta["peaks"] == counter.meta["peaks"]
    with pytest.raises(ModelFileError):
        load_counter(tmp_path / "counter.cellloop", expected_sha256="0" * 64)
    assert is_counting_model(tmp_path / "counter.cellloop")
    assert counter_from_bytes(counter_to_bytes(counter)).meta == counter.meta


def test_a_counting_model_is_never_taken_for_a_segmentation_model(counter, tmp_path):
    from models.persist import load_model, model_to_bytes
    from models.training import TrainConfig, train_model
    path = tmp_path / "counter.cellloop"
    save_counter(counter, path)
    with pytest.raises(ModelFileError):
        load_model(path)
    image, centres = discs(seed=9)
    labels = np.zeros(image.shape, np.uint16)
    for k, (y, x) in enumerate(centres.astype(int), 1):
        labels[disk((y, x), 5, shape=image.shape)] = k
    seg = train_model([image], [labels], config=TrainConfig(
        width=8, depth=2, patch=48, batch=2, epochs=1, steps_per_epoch=1, calibrate=False))
    data = model_to_bytes(seg.model)
    assert not is_counting_model(data)
    with pytest.raises(ModelFileError):
        counter_from_bytes(data)


def test_training_can_be_cancelled_and_reports_progress():
    image, centres = discs(seed=1)
    seen = []
    with pytest.raises(Cancelled):
        train_counter([image], [centres], params=CountingParams(steps=50, **TINY),
                      progress=seen.append, cancel=lambda: len(seen) >= 3)
    assert [s["step"] for s in seen] == [1, 2, 3] and seen[0]["steps"] == 50


def test_bad_input_is_refused():
    image, centres = discs(seed=1)
    with pytest.raises(CountingError):
        train_counter([], [])
    with pytest.raises(CountingError):
        train_counter([image], [centres, centres])
    with pytest.raises(CountingError):
        train_counter([image], [centres], regions=[np.zeros((5, 5), bool)])
    with pytest.raises(ValueError):
        train_counter([image], [np.zeros((3, 3))])


def test_the_log_baseline_finds_the_discs():
    pairs = [discs(seed=s) for s in (30, 31)]
    params, table = count_baseline.tune([p[0] for p in pairs], [p[1] for p in pairs])
    assert len(table) == len(count_baseline.SIGMA_RANGES) * len(count_baseline.THRESHOLDS)
    image, centres = discs(seed=32)
    found = count_baseline.detect(image, params)
    assert len(found) == len(centres)
    assert matched(found, centres) == len(centres)
    rgb_like = np.stack([65535 - image] * 3).astype(np.float64)    # dark nuclei, bright bg
    assert len(count_baseline.detect(rgb_like.astype(np.uint16), params)) == len(centres)


def test_block_mean_averages_whole_blocks_and_drops_the_remainder():
    channel = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    shrunk = count_baseline.block_mean(channel, 2)
    assert shrunk.shape == (2, 3)
    assert shrunk[1, 2] == pytest.approx(channel[2:4, 4:6].mean())
    assert count_baseline.block_mean(channel, 1) is channel
    stack = np.stack([channel, 2 * channel])            # leading axes are kept
    assert count_baseline.block_mean(stack, 2).shape == (2, 2, 3)
    assert count_baseline.block_mean(stack, 2)[1, 1, 2] == pytest.approx(2 * shrunk[1, 2])


def test_an_image_too_small_to_shrink_is_counted_at_full_resolution(monkeypatch):
    from models.strategies import estimated_cells
    seen = []
    real = count_baseline._blobs
    monkeypatch.setattr(count_baseline, "_blobs",
                        lambda channel, params, factor, region=None:
                        seen.append((channel.shape, factor)) or real(channel, params, factor))
    for side in (63, 64):
        estimated_cells(np.zeros((side, side + 10), np.uint16))
    assert seen == [((63, 73), 1), ((32, 37), 2)]


def test_a_half_resolution_count_agrees_with_the_full_one():
    params = count_baseline.LogParams()
    for seed in (40, 41, 42):
        image, centres = discs(shape=(192, 160), n=14, seed=seed)
        assert count_baseline.count_blobs(image, params) == len(
            count_baseline.detect(image, params)) == len(centres)
        assert count_baseline.count_blobs(image, params, factor=2) == len(centres)
    # a row of four small nuclei 7 px apart: counted at full and half resolution, but two
    # of them merge at a quarter (the factor is used, and it has a limit)
    row = np.full((128, 128), 400, np.uint16)
    for k in range(4):
        row[disk((20, 12 + 7 * k), 2, shape=row.shape)] = 3000
    assert [count_baseline.count_blobs(row, params, f) for f in (1, 2, 4)] == [4, 4, 3]


def test_a_counting_model_can_start_from_a_segmentation_models_unet():
    from models.training import TrainConfig, train_model
    image, centres = discs(seed=11)
    labels = np.zeros(image.shape, np.uint16)
    for k, (y, x) in enumerate(centres.astype(int), 1):
        labels[disk((y, x), 5, shape=image.shape)] = k
    seg = train_model([image], [labels], config=TrainConfig(
        width=8, depth=2, patch=48, batch=2, epochs=1, steps_per_epoch=1, calibrate=False),
        meta={"input_mapping": "nuclei-v1"}).model
    model = train_counter([image], [centres], params=CountingParams(
        steps=0, target="density", **TINY), init=seg)     # a density: > 0 before training
    assert model.meta["input_mapping"] == "nuclei-v1"
    assert model.meta["architecture"]["n_classes"] == 1
    seg_state, state = seg.module.state_dict(), model.module.state_dict()
    assert torch.equal(state["down.0.0.weight"].cpu(), seg_state["down.0.0.weight"].cpu())
    assert torch.all(state["head.out.weight"] == 0)      # a new output layer, alive (bias > 0)
    assert float(state["head.out.bias"]) > 0
    assert count_image(model, np.stack([image] * 3), mc_samples=0).count > 0   # RGB is mapped


def _stained(image: np.ndarray, tint: tuple) -> np.ndarray:
    """An RGB 'H&E-like' image: dark purple nuclei where `image` is bright, on a pale pink
    background tinted by `tint` (a different stain per slide)."""
    signal = image.astype(np.float64) / image.max()
    rgb = [np.clip(250 - signal * (250 - 250 * t), 0, 255) for t in tint]
    return np.stack(rgb).astype(np.uint8)


def test_a_model_can_read_the_nucleus_contrast_channel_and_keeps_it(tmp_path):
    """Issue 23: a counting model trained through the "nucleus-contrast-v1" mapping (the
    haematoxylin channel LoG reads) takes RGB slides as one channel, counts a slide of
    another stain, and its file names the mapping."""
    pairs = [discs(seed=s) for s in range(4)]
    tints = [(0.35, 0.15, 0.55), (0.45, 0.2, 0.6), (0.3, 0.1, 0.5), (0.4, 0.25, 0.65)]
    model = train_counter([_stained(p[0], t) for p, t in zip(pairs, tints)],
                          [p[1] for p in pairs],
                          params=CountingParams(steps=160, input_mapping="nucleus-contrast-v1",
                                                **TINY))
    assert model.meta["input_mapping"] == "nucleus-contrast-v1"
    assert model.in_channels == 1
    path = tmp_path / "counter.cellloop"
    save_counter(model, path)
    loaded = load_counter(path)
    image, centres = discs(seed=100)
    result = count_image(loaded, _stained(image, (0.5, 0.3, 0.7)), mc_samples=0)
    assert abs(result.count - len(centres)) <= 1, result.count
    assert matched(result.points, centres) >= len(centres) - 1


def test_a_centre_map_peaks_at_one_on_every_point_however_close():
    pts = np.array([[10, 10], [10, 14], [30, 40], [99, 99]])         # the last is outside
    heat = centre_map(pts, (48, 64), 3.0)
    assert heat.dtype == np.float32 and heat.max() == pytest.approx(1.0)
    assert heat[10, 10] == heat[10, 14] == heat[30, 40] == pytest.approx(1.0)
    assert heat[10, 12] == pytest.approx(np.exp(-4 / 18), rel=1e-5)  # 2 px from both
    assert heat[30, 46] == pytest.approx(np.exp(-36 / 18), rel=1e-5)
    assert density_map(pts, (48, 64), 3.0)[10, 12] > peak_height(3.0)   # sums: no dip
    assert not centre_map(np.zeros((0, 2)), (8, 8), 3.0).any()


def test_a_centre_heat_map_model_counts_its_peaks_and_round_trips(tmp_path):
    pairs = [discs(seed=s) for s in range(4)]
    model = train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                          params=CountingParams(steps=160, target="centres", **TINY))
    assert model.target == "centres" and model.unit_peak == 1.0
    assert model.scale == 1.0 and model.meta["params"]["scale"] == 1.0     # SCALES
    assert model.count_factor == 1.0 and model.point_rule == "threshold"
    # the meta records what was used: no count term in the loss, the threshold's peaks
    assert model.meta["params"]["count_weight"] == 0.0
    assert model.meta["params"]["points"] == "threshold"
    for seed in (100, 101):
        image, centres = discs(seed=seed)
        result = count_image(model, image, mc_samples=8)
        assert result.count == result.n_points == len(centres), result.count
        assert matched(result.points, centres) == len(centres)
        assert np.all(result.samples == np.round(result.samples))     # sampled peak counts
        assert np.abs(result.samples - len(centres)).max() <= 2, result.samples
    image, centres = discs(seed=100)
    cut = next(x for x in range(40, 80) if np.abs(centres[:, 1] - x).min() > 4)
    left = np.zeros(image.shape, bool)
    left[:, :cut] = True                # a region whose edge passes no cell's centre
    inside = int((centres[:, 1] < cut).sum())
    assert 0 < inside < len(centres)
    assert count_image(model, image, mc_samples=0, region=left).count == inside
    save_counter(model, tmp_path / "c.cellloop")
    again = load_counter(tmp_path / "c.cellloop")
    assert again.target == "centres"
    assert count_image(again, image, mc_samples=0).count == len(centres)
    # a heat-map is written as format 2, so a CellLoop from before heat-maps refuses it
    blob = torch.load(tmp_path / "c.cellloop", weights_only=True)
    assert blob["format_version"] == 2


def test_a_model_saved_before_targets_existed_reads_as_a_density(counter, tmp_path):
    blob = torch.load(io.BytesIO(counter_to_bytes(counter)), weights_only=True)
    assert blob["format_version"] == 1                       # density models stay format 1
    del blob["meta"]["density"]["target"]                    # as saved before 2026-12-01
    torch.save(blob, tmp_path / "old.cellloop")
    old = load_counter(tmp_path / "old.cellloop")
    assert old.target == "density" and old.unit_peak == peak_height(old.sigma)
    image, _ = discs(seed=100)
    assert count_image(old, image, mc_samples=0).count == pytest.approx(
        count_image(counter, image, mc_samples=0).count)


def test_an_unknown_target_is_refused():
    image, centres = discs()
    with pytest.raises(CountingError, match="target must be one of density, centres"):
        train_counter([image], [centres], params=CountingParams(steps=1, target="boxes",
                                                                **TINY))
    with pytest.raises(CountingError, match="select_every"):
        train_counter([image], [centres], params=CountingParams(
            steps=1, target="centres", holdout=0.5, select_every=1, **TINY))
    # without a holdout select_every does nothing, so a heat-map trains
    assert train_counter([image], [centres], params=CountingParams(
        steps=1, target="centres", select_every=1, **TINY)).target == "centres"
