"""Int8 inference (models.quantize): close to fp32, reproducible, used only when possible."""
import numpy as np
import pytest
import torch

from models.device import cpu_has_native_bf16
from models.instances import instances_from_probs
from models.metrics import score
from models.persist import ModelFileError, model_from_bytes, model_to_bytes
from models.quantize import CALIBRATION_PATCHES
from tests.models.conftest import disc_data

needs_plain_cpu = pytest.mark.skipif(torch.cuda.is_available() or cpu_has_native_bf16(),
                                     reason="int8 is the CPU path where bf16 is not native")


def test_training_keeps_calibration_patches_and_they_survive_saving(trained):
    patches = trained.model.calibration
    assert patches.shape == (CALIBRATION_PATCHES, 1, 64, 64) and patches.dtype == np.float16
    assert np.isfinite(patches).all() and patches.std() > 0.05      # real image content
    again = model_from_bytes(model_to_bytes(trained.model))
    assert np.array_equal(again.calibration, patches)


@needs_plain_cpu
def test_int8_predictions_match_fp32_and_are_reproducible(trained):
    images, labels = disc_data(2, seed0=80, shape=(160, 144))
    data = model_to_bytes(trained.model)
    first, second = model_from_bytes(data), model_from_bytes(data)
    assert first.runtime(prefer="int8").name == "cpu/int8/onnxruntime"
    second.runtime(prefer="int8")
    for image, truth in zip(images, labels):
        fp32 = trained.model.probabilities(image)
        int8 = first.probabilities(image)
        diff = np.abs(int8 - fp32)
        assert diff.mean() < 0.01 and np.quantile(diff, 0.999) < 0.1
        assert np.array_equal(int8, second.probabilities(image))
        assert score(instances_from_probs(fp32), instances_from_probs(int8)).f1 > 0.95
        assert score(truth, first.instances(int8)).f1 > 0.9


@needs_plain_cpu
def test_int8_only_when_asked_and_possible(trained):
    model = model_from_bytes(model_to_bytes(trained.model))
    assert model.runtime().name == "cpu/fp32/onnxruntime"          # the default: fp32
    assert model.runtime(prefer="fp32").name == "cpu/fp32/onnxruntime"
    model.calibration = None                                        # e.g. an older model file
    assert model.runtime(prefer="int8").name == "cpu/fp32/onnxruntime"


@needs_plain_cpu
def test_the_int8_setting_turns_it_on(trained, monkeypatch):
    from models import settings
    monkeypatch.setattr(settings, "inference_precision", "int8")
    assert model_from_bytes(model_to_bytes(trained.model)).runtime().name == "cpu/int8/onnxruntime"


def test_calibration_patches_of_the_wrong_shape_are_refused(trained):
    import io
    blob = torch.load(io.BytesIO(model_to_bytes(trained.model)), weights_only=True)
    blob["calibration"] = torch.zeros(4, 3, 64, 64, dtype=torch.float16)
    buf = io.BytesIO()
    torch.save(blob, buf)
    with pytest.raises(ModelFileError, match="calibration patches"):
        model_from_bytes(buf.getvalue())
