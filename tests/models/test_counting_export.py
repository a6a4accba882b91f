"""Counting models exported as TorchScript and ONNX (models.counting_export, issue 23): the
exported network gives the native model's density (dropout off, fp32), so a loaded export
counts and finds the same points; the card, embedded and beside the file, says how to count
without CellLoop; each kind's loader refuses the other kind's export; the CLI's `predict`
counts with an exported .pt."""
import json

import numpy as np
import pytest
import tifffile
import torch

from models.counting import PEAK_SMOOTHING, CountingModel, CountingParams, count_image, \
    is_counting_model, load_counter, train_counter
from models.counting_export import export_onnx, export_torchscript, meta_from_card, read_card
from models.counts import load_any
from models.density import peak_height, strongest_peaks
from models.model import ModelFileError, SegmentationModel
from models.unet import UNet
from tests.models.test_counting import TINY, discs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(native model, {suffix: path}): a tiny counter trained for a few seconds, exported."""
    pairs = [discs(seed=s) for s in range(2)]
    model = train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                          params=CountingParams(steps=60, target="density", **TINY))
    model.meta.update(version="test model 1", metrics={"mae": 0.25},
                      training_data=[{"image": "a.tif"}])
    folder = tmp_path_factory.mktemp("exports")
    return model, {".pt": export_torchscript(model, folder / "counter.pt"),
                   ".onnx": export_onnx(model, folder / "counter.onnx")}


def native_fp32(model, image, **kwargs):
    """The native model's count in fp32 torch (dropout off unless samples are asked)."""
    model.runtime(prefer="fp32", device="cpu")
    try:
        return count_image(model, image, keep_density=True, **kwargs)
    finally:
        model._runtime = None


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_an_export_counts_as_the_native_model(exported, suffix):
    model, paths = exported
    image, centres = discs(shape=(100, 90), seed=100)        # not a multiple of 4: padded
    reference = native_fp32(model, image, mc_samples=0)
    assert reference.count > 0.5 * len(centres) and reference.n_points > 0   # a real test
    assert is_counting_model(paths[suffix])
    loaded = load_counter(paths[suffix])
    assert isinstance(loaded, CountingModel) and loaded.exported
    assert isinstance(load_any(paths[suffix]), CountingModel)
    loaded.runtime(prefer="fp32", device="cpu")
    assert "bf16" not in loaded.runtime().name
    result = count_image(loaded, image, mc_samples=16, keep_density=True)
    assert result.density.shape == image.shape
    assert np.allclose(result.density, reference.density, rtol=1e-4, atol=1e-6), \
        np.abs(result.density - reference.density).max()
    assert result.count == pytest.approx(reference.count, rel=1e-4)
    assert np.array_equal(result.points, reference.points)
    # no dropout in an export: no samples, the interval is the count itself
    assert result.low == result.high == result.count and len(result.samples) == 0
    assert np.allclose(result.confidence, reference.confidence, atol=1e-3)
    # the peak rule and count factor came from the card
    for name in ("count_factor", "threshold", "point_rule", "floor", "min_distance", "sigma",
                 "peak_sigma", "multiple", "in_channels"):
        assert getattr(loaded, name) == pytest.approx(getattr(model, name)), name
    # the native model still counts with samples after being exported
    again = count_image(model, image, mc_samples=4)
    assert len(again.samples) == 4 and again.low <= again.count <= again.high


def test_a_card_keeps_its_point_rule_and_an_old_card_keeps_the_threshold(exported):
    model, paths = exported
    card = read_card(paths[".pt"])
    assert card["peaks"]["select"] == "count"
    assert meta_from_card(card)["peaks"]["floor"] == pytest.approx(
        model.meta["peaks"]["floor"])
    old = json.loads(json.dumps(card))                  # written before the "count" rule
    for key in ("select", "floor", "floor_x_peak_height"):
        del old["peaks"][key]
    assert CountingModel(model.module, meta_from_card(old)).point_rule == "threshold"
    odd = json.loads(json.dumps(card))
    odd["peaks"]["select"] = "Count"
    with pytest.raises(ModelFileError, match="unknown peaks.select="):
        CountingModel(model.module, meta_from_card(odd)).point_rule


def test_the_card_is_embedded_beside_the_file_and_enough_to_count_without_cellloop(exported):
    import onnxruntime as ort
    from scipy import ndimage
    model, paths = exported
    for path in paths.values():
        card = read_card(path)
        assert card == json.loads(path.with_suffix(".json").read_text()), path.name
        assert card["format"] == "cellloop-model-card" and card["kind"] == "counting"
        assert card["architecture"] == model.meta["architecture"]
        assert card["normalisation"] == model.meta["normalisation"]
        assert "input_mapping" in card and card["input_mapping"] is None
        assert card["density"] == {"sigma": 3.0, "scale": 100.0, "activation": "relu",
                                   "count_factor": model.count_factor, "target": "density"}
        assert card["count_factor"] == model.count_factor
        assert card["peaks"]["threshold"] == pytest.approx(
            model.meta["peaks"]["threshold"] * peak_height(3.0))
        assert card["peaks"]["min_distance"] == model.min_distance == 6
        assert card["peaks"]["smoothing_sigma"] == PEAK_SMOOTHING * 3.0
        assert (card["version"], card["metrics"], card["training_data"]) == \
            ("test model 1", {"mae": 0.25}, [{"image": "a.tif"}])
        assert "cells per pixel" in card["output"] and "multiples of 4" in card["input"]
        assert "sum of the density" in card["count"] and "local maxima" in card["points"]
        assert "as many as the count rounded half up" in card["points"]
        assert meta_from_card(card)["peaks"]["select"] == "count"
    # plain ONNX Runtime and the card: input "image", output "density", any N, H, W
    session = ort.InferenceSession(str(paths[".onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["density"]
    image, _ = discs(shape=(96, 96), seed=101)
    x = model.prepare(image)[None]
    batch = np.concatenate([x, x[..., ::-1]]).astype(np.float32)
    density = session.run(["density"], {"image": np.ascontiguousarray(batch)})[0]
    assert density.shape == (2, 1, 96, 96)
    card = read_card(paths[".onnx"])
    count = card["count_factor"] * float(density[0, 0].sum())
    smoothed = ndimage.gaussian_filter(density[0, 0], card["peaks"]["smoothing_sigma"],
                                       mode="reflect")
    # the card's rule: the round(count) highest maxima above the floor ("count")
    assert card["peaks"]["select"] == "count"
    half_up = int(np.floor(count + 0.5))
    points, _ = strongest_peaks(smoothed, half_up, card["peaks"]["floor"],
                                card["peaks"]["min_distance"])
    assert len(points) == half_up
    reference = native_fp32(model, image, mc_samples=0)
    assert count == pytest.approx(reference.count, rel=1e-4)
    assert np.array_equal(points, reference.points)


def test_each_loader_refuses_the_other_kinds_export(exported, tmp_path):
    from models.export import export_onnx as seg_onnx, export_torchscript as seg_torchscript, \
        load_onnx, load_torchscript
    from models.persist import load_model
    _, paths = exported
    with pytest.raises(ModelFileError, match="a counting model"):
        load_model(paths[".pt"])
    with pytest.raises(ModelFileError, match="a counting model"):
        load_torchscript(paths[".pt"])
    with pytest.raises(ModelFileError, match="a counting model"):
        load_onnx(paths[".onnx"])
    net = UNet(1, 3, 8, 2).eval()
    seg = SegmentationModel(net, {"architecture": net.config, "kind": "instance"}, module=net)
    for path in (seg_torchscript(seg, tmp_path / "seg.pt"), seg_onnx(seg, tmp_path / "seg.onnx")):
        assert not is_counting_model(path)
        with pytest.raises(ModelFileError, match="not a counting model"):
            load_counter(path)
        assert isinstance(load_any(path), SegmentationModel)
    torch.save({"not": "a model"}, tmp_path / "other.pt")
    assert not is_counting_model(tmp_path / "other.pt")
    with pytest.raises(ModelFileError):
        load_counter(tmp_path / "other.pt")


def test_an_export_cannot_be_saved_natively_and_its_checksum_is_checked(exported):
    from models.counting import counter_to_bytes
    _, paths = exported
    loaded = load_counter(paths[".onnx"])
    with pytest.raises(ModelFileError, match="trained in CellLoop"):
        counter_to_bytes(loaded)
    with pytest.raises(ModelFileError, match="checksum"):
        load_counter(paths[".onnx"], expected_sha256="0" * 64)


def test_cli_predict_with_an_exported_pt_writes_counts(exported, tmp_path, monkeypatch,
                                                       capsys):
    from app import cli
    model, paths = exported
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    assert cli.main(["init-db"]) == 0
    images = tmp_path / "images"
    images.mkdir()
    image, _ = discs(seed=102)
    tifffile.imwrite(images / "fresh.tif", image)
    out = tmp_path / "pred"
    assert cli.main(["predict", str(paths[".pt"]), str(images), "--out", str(out)]) == 0
    counts = json.loads((out / "counts.json").read_text())
    record = counts["fresh.tif"]
    reference = count_image(load_counter(paths[".pt"]), image, mc_samples=0)  # same engine
    assert record["count"] == pytest.approx(reference.count, abs=0.01)
    assert record["low"] == record["high"] == record["count"]
    assert record["n_points"] == reference.n_points == len(record["points"]) > 0
    assert (out / "fresh_overlay.png").exists() and (out / "counts.csv").exists()
    assert "fresh.tif:" in capsys.readouterr().out


def test_a_centre_heat_map_export_counts_its_peaks_as_the_native_model(tmp_path):
    pairs = [discs(seed=s) for s in range(2)]
    model = train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                          params=CountingParams(steps=60, target="centres", **TINY))
    image, _ = discs(shape=(100, 90), seed=100)
    reference = native_fp32(model, image, mc_samples=0)
    assert reference.n_points > 0
    path = export_onnx(model, tmp_path / "centres.onnx")
    card = read_card(path)
    assert card["density"]["target"] == "centres"
    assert card["count"].startswith("count = the number of points")
    assert card["output"].startswith("centre heat-map") and "cells per pixel" not in \
        card["points"]
    loaded = load_counter(path)
    assert loaded.target == "centres" and loaded.unit_peak == 1.0
    result = count_image(loaded, image, mc_samples=4)
    assert result.count == reference.count == result.n_points
    assert np.array_equal(result.points, reference.points)
    old = json.loads(json.dumps(card))                  # a card from before the target
    del old["density"]["target"]
    assert meta_from_card(old)["density"]["target"] == "density"


def test_a_card_with_an_unknown_target_is_refused_by_name(exported):
    model, paths = exported
    card = read_card(paths[".pt"])
    card["density"]["target"] = "boxes"
    with pytest.raises(ModelFileError, match="unknown density.target='boxes'"):
        CountingModel(model.module, meta_from_card(card)).target
