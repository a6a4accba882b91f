"""Cost of scoring an image for the counting queue (issue 23), per target, in one run.

The active-learning queue of a points project ranks images by the MC-dropout spread of their
count (`app.services.counting.score_counts`: `count_image` with 16 samples). For a density
model a sampled count is a sum; for a centre heat-map it is a peak finding per sample, so the
heat-map's score costs more after the network. Measured on the bone-marrow test quarters
(600x600 RGB, `bench_counting.py`'s fixed split) with a model of each target trained briefly
on the training images (the network's cost does not depend on how well it learnt; the peak
finding's does a little, through the number of peaks):

- count_image with mc_samples=0 (the plain count) = the baseline;
- count_image with mc_samples=16 (the queue's score), and its ratio to the baseline;
- the post-processing of the 16 samples alone (peak findings, or sums).

    python bench/bench_count_scoring.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._report import machine, median_ms, write_section  # noqa: E402
from bench.bench_counting import N_TRAIN, load, quarters  # noqa: E402

from models.counting import CountingParams, count_image, peak_map, train_counter  # noqa: E402
from models.density import find_peaks  # noqa: E402

MC = 16


def post_ms(model, image, repeat: int) -> float:
    """Median ms to turn MC samples into counts (what count_image adds per sample after the
    network), timed on the samples of one image."""
    r = count_image(model, image, mc_samples=MC, keep_density=True)
    samples = np.repeat(r.density[None], MC, axis=0)     # same shapes as the sampled maps

    def centres():
        return [len(find_peaks(peak_map(one, model.sigma), model.threshold,
                               model.min_distance, None)[0]) for one in samples]

    def density():
        return samples.reshape(MC, -1).sum(1)

    return median_ms(centres if model.target == "centres" else density, repeat)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    ids, images, points = load()
    test = [q for img, pts in zip(images[N_TRAIN:], points[N_TRAIN:])
            for q, _p in quarters(img, pts)][:4]
    rows = []
    for target in ("density", "centres"):
        params = CountingParams(steps=args.steps, threads=args.threads, target=target)
        model = train_counter(images[:N_TRAIN], points[:N_TRAIN], params=params)
        plain = [median_ms(lambda im=im: count_image(model, im, mc_samples=0), args.repeat)
                 for im in test]
        scored = [median_ms(lambda im=im: count_image(model, im, mc_samples=MC), args.repeat)
                  for im in test]
        post = [post_ms(model, im, args.repeat) for im in test]
        rows.append({"target": target, "plain": float(np.mean(plain)),
                     "scored": float(np.mean(scored)), "post": float(np.mean(post)),
                     "engine": model.meta["training_engine"]})
        print(rows[-1])
    base = rows[0]["scored"]
    body = [f"CPU: {machine()}; torch threads {args.threads}; engine {rows[0]['engine']}. "
            f"Each model trained {args.steps} steps on the 8 training images; timed on "
            f"{len(test)} test quarters (600x600 RGB), median of {args.repeat} calls each, "
            f"mean over the quarters. Wall time {(time.perf_counter() - started) / 60:.1f} min.",
            "",
            f"| target | count, no samples (ms) | queue score, {MC} MC samples (ms) | "
            f"score / count | post-processing of the {MC} samples (ms) | score / density's "
            "score |", "|---|---|---|---|---|---|"]
    for r in rows:
        body.append(f"| {r['target']} | {r['plain']:.0f} | {r['scored']:.0f} | "
                    f"{r['scored'] / r['plain']:.2f} | {r['post']:.1f} | "
                    f"{r['scored'] / base:.2f} |")
    write_section("count-scoring", "Scoring images for the counting queue (issue 23)",
                  "\n".join(body))


if __name__ == "__main__":
    main()
