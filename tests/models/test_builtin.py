"""The built-in nuclei model (models/builtin.py, models/builtin_data.py): its fixed split,
its input mapping, training it (tiny settings) into a card + weights that load, prediction
and fine-tuning through the mapping, and the shipped `models/pretrained/nuclei-v1`."""
import hashlib
import json

import numpy as np
import pytest

from models import builtin
from models.builtin_data import GROUPS, INPUT_MAPPING, split, to_network_input
from models.inference import network_input, predict_image
from tests.images_data import nuclei

DATA = builtin.DATA
needs_data = pytest.mark.skipif(not (DATA / "index.json").exists(),
                                reason=f"the DSB 2018 data is not at {DATA} "
                                       "(../shared/data/dsb2018 beside the checkout)")
TINY = dict(width=4, depth=2, patch=64, batch=2, steps_per_epoch=2, epochs=1, patience=1,
            calibrate=False)


# ----------------------------------------------------------------------- the split
@needs_data
def test_split_is_per_group_sorted_first_80_percent_and_loses_nothing():
    parts = split(DATA)
    assert tuple(parts) == GROUPS
    index = json.loads((DATA / "index.json").read_text())
    seen = []
    for group, (train, test) in parts.items():
        ids = train + test
        assert ids == sorted(ids), group
        assert len(train) == int(round(len(ids) * 0.8)), group
        assert not set(train) & set(test), group
        assert train and test, group
        seen += ids
    assert len(seen) == len(set(seen)) == len(index) == 574
    assert set(seen) == {e["id"] for e in index}
    assert {g: len(tr) for g, (tr, _) in parts.items()} == {
        "fluorescence-small": 277, "fluorescence-large": 84, "histology": 86,
        "brightfield": 13}
    assert split(DATA) == parts                       # a rule: the same every time


# ----------------------------------------------------------------------- the mapping
def test_fluorescence_is_used_unchanged_in_any_bit_depth():
    image, _ = nuclei(shape=(64, 64), seed=1)          # uint16, bright nuclei
    mapped = to_network_input(image[None])
    assert mapped.shape == (1, 64, 64) and mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped[0], image.astype(np.float32))
    grey_rgba = np.stack([image] * 3 + [np.full_like(image, 65535)])   # grey stored as RGBA
    np.testing.assert_array_equal(to_network_input(grey_rgba), mapped)


def test_bright_background_is_inverted_so_nuclei_are_bright():
    image, labels = nuclei(shape=(64, 64), seed=2, dtype=np.uint8)
    brightfield = (255 - image)[None]                  # dark nuclei on a bright background
    mapped = to_network_input(brightfield)[0]
    assert mapped[labels > 0].mean() > mapped[labels == 0].mean() + 50


def test_rgb_histology_becomes_one_bright_nucleus_channel():
    image, labels = nuclei(shape=(64, 64), seed=3, dtype=np.uint8)
    dark = 255 - image.astype(np.float32)              # purple nuclei on a pale background
    rgb = np.stack([dark * 0.9, dark * 0.6, dark]).astype(np.uint8)
    mapped = to_network_input(rgb)
    assert mapped.shape == (1, 64, 64)
    assert mapped[0][labels > 0].mean() > mapped[0][labels == 0].mean() + 30


def test_models_without_a_mapping_see_the_image_as_given():
    image = np.zeros((3, 8, 8), np.uint8)
    assert network_input({"architecture": {}}, image) is image
    assert network_input({"input_mapping": INPUT_MAPPING}, image).shape == (1, 8, 8)


# ----------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_builtin(tmp_path_factory):
    if not (DATA / "index.json").exists():
        pytest.skip(f"the DSB 2018 data is not at {DATA}")
    out = tmp_path_factory.mktemp("pretrained")
    messages = []
    info = builtin.train_builtin(DATA, out, seed=0, minutes=None, limit=1, overrides=TINY,
                                 progress=messages.append, note="tiny test run")
    return out, info, messages


def test_train_builtin_writes_weights_a_card_that_matches_them_and_loads(tiny_builtin):
    out, info, messages = tiny_builtin
    weights = out / "nuclei-v1.cellloop"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == info["weights"]["sha256"]
    assert json.loads((out / "nuclei-v1.json").read_text()) == info
    assert "nuclei-v1" in (out / "nuclei-v1.md").read_text()
    assert set(info["test"]["groups"]) == set(GROUPS) and "macro_f1" in info["test"]
    assert info["training"]["seed"] == 0 and info["note"] == "tiny test run"
    assert info["training_data"]["licence"] == "CC0 1.0"
    assert info["training_data"]["ids_per_group"]["brightfield"] == {"train": 13, "test": 3}
    assert set(info["input_mapping"]["per_modality"]) == set(GROUPS)
    assert any("epoch" in m for m in messages)
    assert builtin.available(out) == ["nuclei-v1"]
    assert builtin.card("nuclei-v1", out)["weights"]["sha256"] == info["weights"]["sha256"]
    model = builtin.load_builtin("nuclei-v1", out)
    assert model.meta["input_mapping"] == INPUT_MAPPING and model.in_channels == 1
    assert model.meta["architecture"]["width"] == TINY["width"]


def test_load_builtin_refuses_swapped_weights_and_missing_models(tiny_builtin, tmp_path):
    out, info, _ = tiny_builtin
    (tmp_path / "nuclei-v1.json").write_text(json.dumps(info))
    (tmp_path / "nuclei-v1.cellloop").write_bytes((out / "nuclei-v1.cellloop").read_bytes()
                                                  + b"x")
    with pytest.raises(builtin.BuiltinModelError, match="sha256"):
        builtin.load_builtin("nuclei-v1", tmp_path)
    with pytest.raises(builtin.BuiltinModelError, match="no built-in model"):
        builtin.load_builtin("nuclei-v9", tmp_path)
    (tmp_path / "nuclei-v1.cellloop").unlink()
    assert builtin.available(tmp_path) == []
    with pytest.raises(builtin.BuiltinModelError, match="missing"):
        builtin.load_builtin("nuclei-v1", tmp_path)


def test_the_builtin_model_predicts_rgb_and_16_bit_images(tiny_builtin):
    out, _, _ = tiny_builtin
    model = builtin.load_builtin("nuclei-v1", out)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 70, 90), dtype=np.uint8)
    result = predict_image(model, rgb)
    assert result.labels.shape == (70, 90)
    image, _ = nuclei(shape=(48, 40), seed=4)          # uint16, one channel, (Y, X)
    assert predict_image(model, image).labels.shape == (48, 40)


def test_exported_builtin_model_keeps_its_mapping(tiny_builtin, tmp_path):
    """TorchScript and ONNX exports of an input-mapped model read RGB images as it does."""
    from models.export import export_onnx, export_torchscript, load_onnx, load_torchscript
    out, _, _ = tiny_builtin
    model = builtin.load_builtin("nuclei-v1", out)
    rgb = np.random.default_rng(1).integers(0, 255, (3, 64, 80), dtype=np.uint8)
    for export, load, name in ((export_torchscript, load_torchscript, "m.pt"),
                               (export_onnx, load_onnx, "m.onnx")):
        loaded = load(export(model, tmp_path / name))
        assert loaded.meta["input_mapping"] == INPUT_MAPPING
        assert predict_image(loaded, rgb).labels.shape == (64, 80)


def test_fine_tuning_the_builtin_model_maps_the_images_and_keeps_the_mapping(tiny_builtin):
    from models.training import TrainConfig, train_model
    from models.uncertainty import mc_dropout
    out, _, _ = tiny_builtin
    init = builtin.load_builtin("nuclei-v1", out)
    pairs = [nuclei(shape=(64, 64), seed=s, dtype=np.uint8) for s in range(3)]
    rgb = [np.stack([255 - im] * 2 + [255 - im // 2]) for im, _ in pairs]   # 3 channels
    result = train_model(rgb, [lab for _, lab in pairs], init=init,
                         config=TrainConfig(**TINY))
    tuned = result.model
    assert tuned.meta["input_mapping"] == INPUT_MAPPING and tuned.in_channels == 1
    assert predict_image(tuned, rgb[0]).labels.shape == (64, 64)
    u = mc_dropout(tuned, rgb[0], passes=2)             # scoring reads through it too
    assert u.entropy.shape == (64, 64)


# ----------------------------------------------------------------------- the shipped model
def test_shipped_nuclei_v1_finds_cells_and_scores_what_its_card_says():
    """The model in models/pretrained/ finds nuclei in the held-out DSB test images of small
    fluorescence and H&E, and scores there what its card says (within 0.03: the engine may
    differ between CPUs)."""
    if "nuclei-v1" not in builtin.available():
        pytest.skip("models/pretrained/nuclei-v1 is not there yet "
                    "(python -m app train-builtin --out models/pretrained/)")
    if not (DATA / "index.json").exists():
        pytest.skip(f"the DSB 2018 test images are not at {DATA}")
    model = builtin.load_builtin()
    card = builtin.card()["test"]["groups"]
    test = {g: ids for g, (_, ids) in split(DATA).items()
            if g in ("fluorescence-small", "histology")}
    scored = builtin.score_groups(model, DATA, test)["groups"]
    for group in test:
        assert abs(scored[group]["f1"] - card[group]["f1"]) <= 0.03, (group, scored, card)
    assert scored["fluorescence-small"]["f1"] >= 0.8, scored
    assert scored["histology"]["f1"] >= 0.5, scored
