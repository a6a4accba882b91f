"""Post-processing (probabilities -> cell instances) of a 4096x4096 image: time and memory
of the shipped banded `models.instances` against the same steps done on the whole image at
once (`bench.baselines.whole_image_segment` + one whole-image hole-filling watershed, what
CellLoop shipped before), in one run.

The probabilities are built from DSB 2018 fluorescence ground truth (test split), tiled
into a 4096x4096 mosaic: interior and boundary classes from the masks, blurred (sigma 1)
with a little noise, so touching cells are joined by uncertain boundaries as a network's
output is. A second, confluent mosaic grows every cell by up to 30 px into the background
(scikit-image `expand_labels`), so that most of the image is one connected region of
touching cells, which row bands of whole groups cannot split: the shipped code cuts it in
overlapping row windows. Each measurement runs in its own process; memory is its high-water
resident set (VmHWM) above what it held after loading the probabilities.

    python bench/bench_postprocess.py
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import write_section  # noqa: E402
from bench.baselines import same_cut, whole_image_segment  # noqa: E402

SIZE = 4096
CASES = ((0.5, 0.0), (0.5, 0.5), (0.5, 2.0))      # (fg_threshold, split)
MIN_SIZE = 20
GROW = 30                                          # confluent mosaic: cells grown this far


def mosaic(path: Path, grow: int = 0) -> dict:
    from scipy import ndimage
    from skimage.segmentation import expand_labels, find_boundaries

    from models import bands
    from models.instances import REACH

    from bench.dsb import fluorescence_split, load
    _, test_ids = fluorescence_split()
    _, labels = load(test_ids)
    rng = np.random.default_rng(0)
    truth = np.zeros((SIZE, SIZE), np.int32)
    tile, offset = 256, 0
    for y0 in range(0, SIZE, tile):
        for x0 in range(0, SIZE, tile):
            lab = labels[rng.integers(len(labels))]
            crop = lab[:tile, :tile].astype(np.int32)
            h, w = crop.shape
            truth[y0:y0 + h, x0:x0 + w] = np.where(crop > 0, crop + offset, 0)
            offset += int(crop.max())
    if grow:
        truth = expand_labels(truth, grow)
    boundary = find_boundaries(truth, mode="inner")
    probs = np.empty((3, SIZE, SIZE), np.float32)
    probs[1] = (truth > 0) & ~boundary
    probs[2] = boundary
    probs[0] = truth == 0
    for k in range(3):
        probs[k] = ndimage.gaussian_filter(probs[k], 1.0)
    probs += rng.uniform(0, 0.05, probs.shape).astype(np.float32)
    probs /= probs.sum(0)
    np.save(path, probs)
    group_labels, _ = bands.groups(truth > 0, REACH)
    heights = [box[0].stop - box[0].start for box in ndimage.find_objects(truth) if box]
    return {"cells": int(len(np.unique(truth)) - 1), "foreground": float((truth > 0).mean()),
            "largest_region": float(np.bincount(group_labels.ravel())[1:].max() / truth.size),
            "tallest": int(max(heights))}


def _hwm_mib() -> float:
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def child(path: str, way: str, fg: float, split: float, out: str) -> None:
    import logging
    logging.basicConfig(level=logging.INFO)       # models.instances says when it redoes a band
    probs = np.load(path)
    from models import instances
    start_mib = _hwm_mib()
    t = time.perf_counter()
    if way == "banded":
        cut = instances.segment(probs, fg, split)
        labels = instances.finish(cut, MIN_SIZE)
    else:
        cut = whole_image_segment(probs, fg, split)
        labels = whole_image_finish(cut)
    seconds = time.perf_counter() - t
    np.savez(out, labels=labels, cut=cut)
    print(json.dumps({"seconds": seconds, "mib": _hwm_mib() - start_mib,
                      "cells": int(labels.max())}))


def whole_image_finish(labels):
    """Before: size filter, scipy's hole filling and one whole-image watershed on flat
    ground into the holes, then numbering."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    from models.instances import _drop_small, _relabel
    labels = _drop_small(labels, MIN_SIZE)
    filled = ndimage.binary_fill_holes(labels > 0)
    if (filled & (labels == 0)).any():
        labels = watershed(np.zeros(labels.shape, np.float32), markers=labels, mask=filled)
    return _relabel(labels)[0]


def same_cells(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of foreground pixels whose cell in `a` and in `b` is the same cell (each cell
    of `a` matched to the cell of `b` it overlaps most)."""
    pairs, counts = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1, return_counts=True)
    keep = (pairs[0] > 0) & (pairs[1] > 0)
    best = {}
    for (la, lb), n in zip(pairs[:, keep].T, counts[keep]):
        best[la] = max(best.get(la, 0), n)
    return sum(best.values()) / max(1, int((a > 0).sum()))


def main() -> None:
    rows, mosaics = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, grow in (("cells", 0), ("confluent", GROW)):
            path = Path(tmp) / f"{kind}.npy"
            mosaics[kind] = mosaic(path, grow)
            print(kind, mosaics[kind], flush=True)
            for fg, split in CASES:
                rows.append(f"| {kind} | " + compare(path, fg, split, Path(tmp)))
                print(rows[-1], flush=True)
    cells, confluent = mosaics["cells"], mosaics["confluent"]
    body = f"""Two {SIZE}x{SIZE} mosaics of DSB 2018 test-split ground truth turned into probabilities
(blurred classes plus noise), post-processed at foreground threshold 0.5, minimum size
{MIN_SIZE}, for three seed-splitting settings:
- *cells*: the ground truth as it is ({cells['cells']} cells, {100 * cells['foreground']:.0f}% foreground;
  the largest group of cells within reach of one another covers
  {100 * cells['largest_region']:.1f}% of the image);
- *confluent*: every cell grown by up to {GROW} px into the background ({confluent['cells']} cells,
  {100 * confluent['foreground']:.0f}% foreground, one connected region covering
  {100 * confluent['largest_region']:.0f}% of the image; tallest cell {confluent['tallest']} rows).

"Whole image" is the previous implementation (every step on the whole image at once,
scikit-image `h_maxima`, one whole-image watershed to fill holes); "banded" is the shipped
`instances_from_probs` (row bands of whole groups of cells of about 2 megapixels; a group
larger than that, as in the confluent mosaic, in overlapping row windows of about 2
megapixels, each keeping the cells centred in its own rows; without seed splitting the
windows overlap by more than the tallest area of interior, and a band is redone with twice
the overlap where a cell is still taller than it; h-maxima object by object;
holes filled box by box, each from the nearest cell). Memory: extra high-water resident set
of the process beyond the loaded probabilities (192 MiB).

| mosaic | split | cells (whole / banded) | whole s | banded s | speed-up | whole MiB | banded MiB | memory ratio | same cut before hole filling | band passes redone with a larger overlap | final pixels in the same cell |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

"Same cut": the watershed labels before size filter and hole filling cut the same cells,
numbering aside (also tested against the whole-image reference in
`tests/models/test_postprocess.py`). The final labels can differ in hole pixels, which now go
to the nearest cell instead of following the watershed's tie order.
"""
    write_section("postprocess", "Post-processing memory and time, 4096x4096 (issue 5)", body)


def compare(path: Path, fg: float, split: float, tmp: Path) -> str:
    """One table row (after the mosaic column): whole image vs banded, each in a child."""
    result = {}
    for way in ("whole", "banded"):
        out = tmp / f"{way}.npz"
        run = subprocess.run([sys.executable, __file__, "--child", str(path), way,
                              str(fg), str(split), str(out)],
                             capture_output=True, text=True, check=True)
        result[way] = json.loads(run.stdout.strip().splitlines()[-1])
        result[way]["redone"] = len(re.findall(r"crossed a window edge", run.stderr))
        with np.load(out) as saved:
            result[way].update(labels=saved["labels"], cut=saved["cut"])
    w, b = result["whole"], result["banded"]
    agree = same_cells(w["labels"], b["labels"])
    same = "yes" if same_cut(w["cut"], b["cut"]) else "**no**"
    return (f"{split} | {w['cells']} / {b['cells']} | {w['seconds']:.2f} | "
            f"{b['seconds']:.2f} | {w['seconds'] / b['seconds']:.2f}x | "
            f"{w['mib']:.0f} | {b['mib']:.0f} | {w['mib'] / max(b['mib'], 1):.1f}x | "
            f"{same} | {b['redone']} | {100 * agree:.3f}% |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        main()
