"""Memory and time of stratified-cheap's cell count on big images: the nucleus-contrast
channel built in row strips (models.nucleus_contrast, as shipped) against the same function
given one strip (the whole image at once, as the code before the strips built it), in the
same run.

Images: mosaics of real DSB 2018 images (../shared/data/dsb2018), tiled to SIDE x SIDE: an
H&E one (RGB uint8: the float64 colour deconvolution is the costly case) and a grey
fluorescence one (uint16). Peak memory by tracemalloc (numpy reports its buffers to it), in
bytes per image pixel; wall time in a separate call, without tracing.

    python bench/bench_count_memory.py [--side 4096]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.dsb import DATA, require_data  # noqa: E402
from models.count_baseline import LogParams, _blobs  # noqa: E402
from models.nucleus_contrast import STRIP_PIXELS, shrunk_nucleus_channel  # noqa: E402
from models.strategies import COUNT_FACTOR, estimated_cells  # noqa: E402
from storage.readers import read_image  # noqa: E402


def mosaic(images: list[np.ndarray], side: int) -> np.ndarray:
    """Tile (C, y, x) images row by row into a (C, side, side) image."""
    channels = images[0].shape[0]
    out = np.zeros((channels, side, side), images[0].dtype)
    y = x = row_height = k = 0
    while y < side:
        img = images[k % len(images)]
        k += 1
        h, w = img.shape[-2:]
        if x >= side:
            y, x, row_height = y + row_height, 0, 0
            continue
        out[:, y:y + h, x:x + w] = img[:, :side - y, :side - x]
        x, row_height = x + w, max(row_height, h)
    return out


def test_images(side: int) -> dict[str, np.ndarray]:
    index = json.loads((require_data() / "index.json").read_text())
    he = [e["id"] for e in index if e["modality"] == "histology_color"][:12]
    fluo = [e["id"] for e in index if e["modality"] == "fluorescence"][:40]
    he_images = [read_image(DATA / "images" / f"{i}.png").pixels[0][:3] for i in he]
    fluo_images = [read_image(DATA / "images" / f"{i}.png").pixels[0][:1].astype(np.uint16) * 257
                   for i in fluo]
    return {"H&E, RGB uint8": mosaic(he_images, side),
            "fluorescence, grey uint16": mosaic(fluo_images, side)}


def peak_and_seconds(fn) -> tuple[float, float, object]:
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    t0 = time.perf_counter()
    fn()
    return peak, time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=4096)
    args = ap.parse_args()
    rows = []
    for name, image in test_images(args.side).items():
        px = image.shape[-2] * image.shape[-1]
        arms = {"one strip (the whole image at once)": px,
                f"strips of {STRIP_PIXELS:,} px (shipped)": STRIP_PIXELS}
        results = {}
        for arm, strip in arms.items():
            peak, seconds, channel = peak_and_seconds(
                lambda: shrunk_nucleus_channel(image, COUNT_FACTOR, strip))
            cells = len(_blobs(channel, LogParams(), COUNT_FACTOR))
            results[arm] = (peak, seconds, cells)
            print(name, arm, f"{peak / px:.1f} B/px {seconds:.2f} s {cells} cells", flush=True)
        base_peak, base_s, _ = results[next(iter(arms))]
        for arm, (peak, seconds, cells) in results.items():
            rows.append(f"| {name} | {arm} | {peak / px:.1f} | {peak / base_peak:.2f} "
                        f"| {seconds:.2f} | {seconds / base_s:.2f} | {cells} |")
        peak, seconds, cells = peak_and_seconds(lambda: estimated_cells(image))
        rows.append(f"| {name} | the whole count (`estimated_cells`, shipped) | {peak / px:.1f} "
                    f"| {peak / base_peak:.2f} | {seconds:.2f} | – | {cells} |")
    body = f"""Images: {args.side} x {args.side} mosaics of real DSB 2018 images ({args.side ** 2 / 1e6:.1f} Mpx). The
half-resolution nucleus-contrast channel (factor {COUNT_FACTOR}) built in one strip, the whole image
at once (the baseline: the code before strips did the same in one pass), and in row strips;
then the whole count as
stratified-cheap runs it (the channel, then the LoG and its peaks at half resolution; its
time is not compared). Peak: tracemalloc's peak during the call, per image pixel.

| image | channel built | peak bytes / px | peak vs baseline | seconds | time vs baseline | cells counted |
|---|---|---|---|---|---|---|
""" + "\n".join(rows)
    write_section("count_memory", "Cell count of big images: memory (issue 21)", body)


if __name__ == "__main__":
    main()
