"""Int8 vs fp32 inference of one trained model, in one run: test F1@0.5 and Dice on the DSB
2018 fluorescence test split (same fixed split as bench_accuracy.py) and megapixels/s on
the same test images, both through ONNX Runtime on the CPU.

    python bench/bench_int8.py [--minutes 10]

The model is trained here with the default settings for `--minutes` (the goal is the
difference between the two precisions, not the best model), saved and loaded the way the
app loads a model version, so int8 uses the calibration patches stored with it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.bench_accuracy import DEFAULT, evaluate, row  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402
from models.persist import model_from_bytes, model_to_bytes  # noqa: E402
from models.training import TrainConfig, train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    train_ids, test_ids = fluorescence_split()
    train_x, train_y = load(train_ids)
    test_x, test_y = load(test_ids)
    result = train_model(train_x, train_y,
                         config=TrainConfig(**DEFAULT, max_seconds=args.minutes * 60))
    data = model_to_bytes(result.model)
    rows, speed = [], {}
    for prefer in ("fp32", "int8"):
        model = model_from_bytes(data)
        engine = model.runtime(prefer=prefer).name
        model.probabilities(test_x[0])                   # build the session (and quantize)
        pixels = sum(x.shape[-1] * x.shape[-2] for x in test_x)
        t = time.perf_counter()
        probs = [model.probabilities(x) for x in test_x]
        speed[prefer] = pixels / 1e6 / (time.perf_counter() - t)
        m = evaluate(engine, model.instances, probs, test_y)
        rows.append(row(f"{engine}", m) + f" {speed[prefer]:.2f} |")
    body = f"""One U-Net (default settings, {result.steps} steps in {result.seconds / 60:.1f} min, its own
post-processing), saved and loaded as the app does, then run on the {len(test_x)} DSB
fluorescence test images through ONNX Runtime in full precision and quantized to int8
(static, per-channel weights, activation ranges from the {len(result.model.calibration)}
training patches stored with the model; `models/quantize.py`). Speed: network and tiling
only, megapixels/s over all test images.

| engine | F1@0.5 | precision | recall | mean matched IoU | pixel Dice | count error | MP/s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

int8 vs fp32: {speed['int8'] / speed['fp32']:.2f}x the speed.
"""
    write_section("int8", "Int8 vs fp32 inference (issue 5)", body)


if __name__ == "__main__":
    main()
