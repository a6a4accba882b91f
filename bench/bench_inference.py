"""Inference and training throughput of the default network on this machine.

Inference, in one run on the same 2048x2048 image (tiles of at most 512 px, overlap 64,
laid out by `models.tiling.layout`; tiles per pass as the runtime chooses), in
megapixels/s: fp32 eager (contiguous), the shipped path (what `select_runtime("auto")` picks
here), a frozen TorchScript graph, and ONNX Runtime. Peak memory of predicting a 4096x4096
image (separate process). Training: patches/s over a fixed number of steps.

    python bench/bench_inference.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from models.device import Runtime, cpu_has_native_bf16  # noqa: E402
from models.export import export_onnx, load_onnx  # noqa: E402
from models.model import SegmentationModel  # noqa: E402
from models.tiling import layout  # noqa: E402
from models.training import TrainConfig, loss_fn  # noqa: E402
from models.unet import UNet  # noqa: E402

ARCH = dict(in_channels=1, n_classes=3, width=16, depth=4, dropout=0.2)


def make_model() -> SegmentationModel:
    """The default network (random weights: speed does not depend on them), with 16
    calibration patches as training stores them (what int8 quantization measures)."""
    torch.manual_seed(0)
    net = UNet(**ARCH).eval()
    patches = np.random.default_rng(1).normal(0.3, 0.1, (16, 1, 128, 128)).astype(np.float16)
    return SegmentationModel(net, {"architecture": net.config,
                                   "normalisation": {"low": 1, "high": 99.8}}, module=net,
                             calibration=patches)


def throughput(fn, image, repeat=3) -> float:
    fn(image)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - t)
    return image.shape[-1] * image.shape[-2] / 1e6 / statistics.median(times)


def memory_child(size: int) -> None:
    model = make_model()
    model.frozen = True
    image = np.random.default_rng(0).integers(0, 4000, (1, size, size), dtype=np.uint16)
    from models.inference import predict_image
    print(*_peak_and_foreground(predict_image(model, image, keep_probabilities=True)))


def _peak_and_foreground(result) -> tuple[float, float]:
    """This process's peak memory (MiB) and the foreground fraction of a prediction.
    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child of this
    (large) benchmark process would report at least the parent's size."""
    foreground = float(((result.probabilities[1] + result.probabilities[2]) > 0.5).mean())
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return int(hwm.split()[1]) / 1024, foreground


def cells_memory_child(model_path: str, image_path: str) -> None:
    """Peak memory of predicting a 4096x4096 image of real cells with a (briefly) trained
    model, loaded from its file as the app does."""
    from models.inference import predict_image
    from models.persist import load_model
    model = load_model(model_path)
    result = predict_image(model, np.load(image_path), keep_probabilities=True)
    print(*_peak_and_foreground(result), result.count)


def cells_memory(tmp: Path) -> dict | None:
    """Train the default network for 100 steps on 60 DSB training images, tile DSB test
    images into a 4096x4096 image, and measure predicting it in a child process; None
    without the DSB data."""
    from bench import dsb
    if not (dsb.DATA / "index.json").exists():
        return None
    from models.persist import save_model
    from models.training import train_model
    train_ids, test_ids = dsb.fluorescence_split()
    images, labels = dsb.load(train_ids[:60])
    result = train_model(images, labels, config=TrainConfig(
        width=ARCH["width"], depth=ARCH["depth"], patch=128, batch=16, steps_per_epoch=50,
        epochs=2, calibrate=False))
    save_model(result.model, tmp / "cells.cellloop")
    tests, _ = dsb.load(test_ids)
    rng = np.random.default_rng(0)
    mosaic = np.zeros((4096, 4096), np.float32)
    for y0 in range(0, 4096, 256):
        for x0 in range(0, 4096, 256):
            crop = tests[rng.integers(len(tests))][0, :256, :256]
            lo, hi = np.percentile(crop, (1, 99.8))
            mosaic[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = \
                np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    np.save(tmp / "cells.npy", mosaic.astype(np.uint8))
    out = subprocess.run([sys.executable, __file__, "--cells-memory-child",
                          str(tmp / "cells.cellloop"), str(tmp / "cells.npy")],
                         capture_output=True, text=True, check=True)
    peak, fraction, count = out.stdout.strip().splitlines()[-1].split()
    return {"mib": float(peak), "foreground": float(fraction), "count": int(count),
            "steps": result.steps}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--memory-child":
        memory_child(int(sys.argv[2]))
        return
    if len(sys.argv) > 3 and sys.argv[1] == "--cells-memory-child":
        cells_memory_child(sys.argv[2], sys.argv[3])
        return
    image = np.random.default_rng(0).normal(0.3, 0.1, (1, 2048, 2048)).astype(np.float32)
    rows = []

    def run_with(model: SegmentationModel, runtime: Runtime):
        model._runtime = None
        model.runtime(prefer="bf16" if runtime.dtype == torch.bfloat16 else "fp32")
        model._runtime = runtime
        if model.module is not None:
            model.module.to(memory_format=torch.channels_last if runtime.channels_last
                            else torch.contiguous_format)
        return lambda im: model.probabilities(im, normalised=True)

    model = make_model()
    eager = throughput(run_with(model, Runtime(torch.device("cpu"), None, False)), image)
    rows.append(("fp32 eager (contiguous)", eager))
    rows.append(("fp32 eager (contiguous), 4 tiles per pass", throughput(
        lambda im: model.probabilities(im, normalised=True, batch=4), image)))
    rows.append(("torch fp32 + channels_last", throughput(
        run_with(model, Runtime(torch.device("cpu"), None, True)), image)))
    shipped_model = make_model()
    shipped_model.frozen = True          # as loaded for prediction (models.persist)
    shipped_rt = shipped_model.runtime()
    shipped = throughput(lambda im: shipped_model.probabilities(im, normalised=True), image)
    rows.append((f"**shipped path: {shipped_rt.name}**", shipped))
    rows.append(("shipped path, 4 tiles per pass", throughput(
        lambda im: shipped_model.probabilities(im, normalised=True, batch=4), image)))
    int8_model = make_model()
    int8_model.frozen = True
    int8_rt = int8_model.runtime(prefer="int8")
    if int8_rt.engine == "onnxruntime-int8":
        rows.append(("int8 ONNX Runtime (`INFERENCE_PRECISION=int8`)", throughput(
            lambda im: int8_model.probabilities(im, normalised=True), image)))
    if shipped_rt.dtype is None:
        bf16 = throughput(run_with(model, Runtime(torch.device("cpu"), torch.bfloat16, True)),
                          image, repeat=1)
        rows.append(("bf16 autocast + channels_last (not chosen on this CPU)", bf16))
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(
            make_model().module.eval(), torch.zeros(1, 1, 512, 512))))
    frozen_model = SegmentationModel(frozen, make_model().meta)
    frozen_model._runtime = Runtime(torch.device("cpu"), None, False)
    rows.append(("TorchScript frozen + optimize_for_inference", throughput(
        lambda im: frozen_model.probabilities(im, normalised=True), image)))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = load_onnx(export_onnx(make_model(), Path(tmp) / "m.onnx"))
        onnx_model._runtime = Runtime(torch.device("cpu"), None, False)
        ort = throughput(lambda im: onnx_model.probabilities(im, normalised=True), image)
    rows.append(("ONNX Runtime fp32 (CPU provider)", ort))

    mem, foreground = {}, {}
    for size in (1024, 4096):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(size)],
                             capture_output=True, text=True, check=True)
        peak, fraction = out.stdout.strip().splitlines()[-1].split()
        mem[size], foreground[size] = float(peak), float(fraction)
    with tempfile.TemporaryDirectory() as tmp:
        cells = cells_memory(Path(tmp))
    if cells is None:
        cells_text = "(The same for an image of real cells needs ../shared/data/dsb2018: not run.)"
    else:
        cells_text = f"""For an image of real cells, a 4096x4096 mosaic of DSB test-split crops (each
stretched to 8 bits) predicted by the default network trained for {cells['steps']} steps on 60
DSB training images, loaded from its file as the app does: **{cells['mib']:.0f} MiB**
({100 * cells['foreground']:.0f}% foreground, {cells['count']} cells)."""

    train_rows = []
    layouts = [("contiguous", False, False), ("channels_last", True, False)]
    if cpu_has_native_bf16():        # what training picks here (TrainConfig.precision "auto")
        layouts.append(("channels_last + bf16 autocast", True, True))
    for patch, batch in ((128, 16), (256, 8)):
        for name, cl, bf16 in layouts:
            torch.manual_seed(0)
            net = UNet(**ARCH)
            if cl:
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(net.parameters(), 2e-3)
            x = torch.randn(batch, 1, patch, patch)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 3, (batch, patch, patch))
            steps, t0 = 6, None
            for i in range(steps + 1):
                if i == 1:
                    t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = net(x)
                loss = loss_fn(logits.float(), y, TrainConfig())
                opt.zero_grad()
                loss.backward()
                opt.step()
            rate = steps * batch / (time.perf_counter() - t0)
            train_rows.append(f"| {patch}x{patch}, batch {batch} | {name} | {rate:.1f} |")

    table = "\n".join(f"| {name} | {mps:.2f} | {mps / eager:.2f}x |" for name, mps in rows)
    body = f"""Default network: U-Net width {ARCH['width']}, depth {ARCH['depth']}, 3 classes. Image
2048x2048 in 5x5 tiles of {layout(2048, 512, 64)[0]} px (at most 512, overlap at least 64 px;
`models.tiling.layout`), one tile per forward pass on the CPU, median of 3 runs after a
warm-up.
torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()},
{torch.get_num_threads()} threads.

The shipped path is what `SegmentationModel.runtime()` picks for a trained model on this
machine: CUDA with bf16 autocast when present; bf16 + channels_last on CPUs with native bf16
(AVX512-BF16/AMX); otherwise ONNX Runtime in fp32. With `INFERENCE_PRECISION=int8` such
CPUs run the network quantized (`models/quantize.py`); its accuracy against fp32 is measured
by `bench/bench_int8.py` (section below).

| path | megapixels/s | vs fp32 eager |
|---|---|---|
{table}

Peak memory (high-water resident set, VmHWM, of a separate process predicting one image,
model and post-processing included): 1024x1024:
{mem[1024]:.0f} MiB; 4096x4096: {mem[4096]:.0f} MiB. The image is noise and the network
untrained, so {100 * foreground[4096]:.0f}% of the 4096x4096 image is foreground: the worst
case for post-processing, one region that is one cell as tall as the image, which neither
its row bands nor its overlapping windows can split. For cells as a trained network sees
them, sparse or confluent, post-processing memory is measured by `bench/bench_postprocess.py`
(section below). {cells_text}

Training throughput (forward + backward + AdamW step, {6} timed steps after one warm-up; training
uses bf16 autocast where the CPU has native bf16, `TrainConfig.precision` "auto"):

| patches | layout | patches/s |
|---|---|---|
{chr(10).join(train_rows)}
"""
    write_section("inference", "Inference and training throughput (issue 5)", body)


if __name__ == "__main__":
    main()
