"""Active-learning simulations for the CLI and the page: load a dataset with full ground
truth (a project whose images have masks, or a folder with images/ and labels/ matched by
file stem), run `models.simulation.simulate`, and write curves.csv, curves.html (interactive,
self-contained) and summary.json / summary.md.

`simulate_project` is the `simulate` job's work (its handler in app.jobs.handlers calls it);
a cancelled simulation raises `models.cancel.Cancelled`, so its job always ends "cancelled"."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy.orm import Session

from app.db import Database
from app.errors import ValidationError
from app.permissions import Actor, require
from app.services import jobs, project_settings
from app.services.training import gather
from app.states import JobState
from app.tables import Project
from storage import writers
from storage.blobstore import BlobStore

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")


def load_folder(folder: str | Path, max_pixels: int = 1 << 28
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(C, Y, X) images, (Y, X) labels and names from folder/images and folder/labels."""
    from storage.readers import read_image, read_labels_bytes
    folder = Path(folder)
    img_dir, lab_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise ValidationError(f"{folder} needs images/ and labels/ folders (files matched by "
                              "name without extension).")
    labels_by_stem = {p.stem: p for p in lab_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images, labels, names = [], [], []
    for path in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem not in labels_by_stem:
            continue
        pixels = read_image(path, max_pixels).pixels
        if pixels.shape[0] != 1:
            raise ValidationError(f"{path.name}: z-stacks are not supported in simulations.")
        lab_path = labels_by_stem[path.stem]
        images.append(pixels[0])
        labels.append(read_labels_bytes(lab_path.name, lab_path.read_bytes(),
                                        pixels.shape[2:], max_pixels))
        names.append(path.name)
    if not images:
        raise ValidationError(f"No image in {img_dir} has a label file of the same name in "
                              f"{lab_dir}.")
    return images, labels, names


def load_project(session: Session, store, project_id: int):
    data = gather(session, store, project_id)
    if not data.images:
        raise ValidationError("This project has no annotated images to simulate with.")
    return data.images, data.labels, [str(r["image_id"]) for r in data.refs]


def round_settings(session: Session, project_id: int) -> dict:
    """How the project fine-tunes (learning rate and pull), for a simulation of its loop;
    the rest of the training stays the simulation's small budget."""
    training = project_settings.ProjectSettings.of(session.get(Project, project_id)).training
    return {"lr": training.lr, "pull": training.pull}


def load_groups(path: str | Path, names: list[str]) -> list[str | None]:
    """One group per image from a CSV of (image stem, group) rows (a header row is
    allowed); images the file does not name get None (not counted in any group)."""
    import csv
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and len(r) >= 2]
    except OSError as exc:
        raise ValidationError(f"Cannot read the groups file {path}: {exc.strerror}.") from None
    by_stem = {r[0].strip(): r[1].strip() for r in rows if r[1].strip()}
    groups = [by_stem.get(Path(n).stem) for n in names]
    if not any(groups):
        raise ValidationError(f"The groups file {path} names none of the images (its first "
                              "column is the image's file name without extension).")
    return groups


def write_outputs(rows: list[dict], out: Path, plan, names: list[str] | None = None) -> dict:
    from models.simulation_plan import columns, figure, summarise
    out.mkdir(parents=True, exist_ok=True)
    writers.write_csv(out / "curves.csv", rows, columns(rows))
    figure(rows, cost=plan.cost, unit=plan.unit).write_html(str(out / "curves.html"),
                                                            include_plotlyjs=True)
    summary = {"plan": {k: v for k, v in vars(plan).items() if k != "test_indices"},
               "strategies": summarise(rows, target=plan.target_f1),
               "n_images": len(names or [])}
    writers.write_json(out / "summary.json", summary)
    metric = summary["strategies"][0]["metric"] if summary["strategies"] else "f1"
    lines = [f"Cost: {plan.cost} per {plan.unit}; start: {plan.start}; metric: {metric}.", "",
             f"| strategy | final {metric} | sd | area vs cost | area vs random | "
             f"labels to target | cost to target (median of seeds) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['strategy']} | {s['final_f1']} | {s['final_sd']} | {s['auc']} | "
              f"{s['auc_vs_random']} | {s['labels_to_target']} | {s['cost_to_target']} |"
              for s in summary["strategies"]]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def parse_plan(strategies: str | list, initial: int, batch: int, rounds: int, seeds: int,
               test_fraction: float, passes: int = 8, unit: str = "image",
               start: str = "scratch", cost: str = "images", region: int = 256):
    from models.simulation_plan import COSTS, STARTS, UNITS, SimulationPlan
    names = strategies.split(",") if isinstance(strategies, str) else list(strategies)
    try:
        plan = SimulationPlan([n.strip() for n in names if n.strip()], int(initial), int(batch),
                              int(rounds), list(range(int(seeds))), float(test_fraction),
                              int(passes), unit=str(unit), start=str(start), cost=str(cost),
                              region=int(region))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Bad simulation settings: {exc}") from None
    if not plan.strategies or plan.initial < 1 or plan.batch < 1 or plan.rounds < 1 \
            or not plan.seeds or not 0 < plan.test_fraction < 1:
        raise ValidationError("Give strategies, and initial, batch, rounds, seeds >= 1 and a "
                              "test fraction between 0 and 1.")
    for value, allowed, what in ((plan.unit, UNITS, "Unit"), (plan.start, STARTS, "Start"),
                                 (plan.cost, COSTS, "Cost")):
        if value not in allowed:
            raise ValidationError(f"{what} must be one of {', '.join(allowed)}.")
    if not 32 <= plan.region <= 4096:
        raise ValidationError("The region side must be between 32 and 4096 pixels.")
    return plan


def run(images, labels, names, plan, out: Path, training: dict | None = None,
        progress=None, should_stop=None, groups: list | None = None,
        start_model=None) -> tuple[list[dict], dict]:
    """Simulate and write the outputs. With `plan.start == "builtin"` the first model is
    `start_model` (default: the built-in nuclei model) and every round's model, from
    scratch or not, reads images through its input mapping."""
    from models.simulation import simulate, units_of
    from models.training import TrainConfig
    try:
        plan.check(len(images), n_units=len(units_of(images, plan.split(len(images))[0],
                                                     plan)))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    meta = None
    if plan.start == "builtin":
        if start_model is None:
            from models.builtin import load_builtin
            start_model = load_builtin()
        meta = {"input_mapping": start_model.meta["input_mapping"]} \
            if start_model.meta.get("input_mapping") else None
        if start_model.meta.get("architecture"):     # fine-tune the same network
            training = {**(training or {}), **{k: start_model.meta["architecture"][k]
                                               for k in ("width", "depth")
                                               if k in start_model.meta["architecture"]}}
    defaults = project_settings.SIMULATION_TRAINING.as_dict()
    cfg = TrainConfig(**{**defaults, **(training or {})})
    rows = simulate(images, labels, plan, cfg, progress=progress, should_stop=should_stop,
                    groups=groups, start_model=start_model, meta=meta)
    return rows, write_outputs(rows, out, plan, names)


def start_simulation(session: Session, actor: Actor, project_id: int, params: dict,
                     enqueue) -> jobs.JobInfo:
    """Run a simulation on the project's annotated images as a background job."""
    require(session, actor, project_id, "train")
    form = project_settings.SimulationSettings()
    plan = parse_plan(params.get("strategies", "random,entropy"),
                      params.get("initial", form.initial), params.get("batch", form.batch),
                      params.get("rounds", form.rounds), params.get("seeds", form.seeds),
                      params.get("test_fraction", form.test_fraction),
                      params.get("passes", form.passes), params.get("unit", form.unit),
                      params.get("start", form.start), params.get("cost", form.cost),
                      params.get("region", form.region))
    if plan.start == "builtin":
        from models.builtin import available
        if not available():
            raise ValidationError("The built-in model is not installed, so a simulation "
                                  "cannot start from it.")
    clean = {"strategies": plan.strategies, "initial": plan.initial, "batch": plan.batch,
             "rounds": plan.rounds, "seeds": len(plan.seeds),
             "test_fraction": plan.test_fraction, "passes": plan.passes, "unit": plan.unit,
             "start": plan.start, "cost": plan.cost, "region": plan.region}
    return jobs.submit_job(session, actor, project_id, "simulate", clean, enqueue)


def simulate_project(db: Database, store: BlobStore, project_id: int, out: Path,
                     progress: Callable[..., None], should_stop: Callable[[], bool], *,
                     strategies, initial, batch, rounds, seeds, test_fraction,
                     passes=8, unit="image", start="scratch", cost="images",
                     region=256) -> dict:
    """Run a simulation on the project's annotated images, writing its outputs to `out`;
    `progress(fraction, message, force)` after each round. Raises `Cancelled` (from
    models.simulation) when `should_stop()` says so."""
    with db.session_scope() as session:
        images, labels, names = load_project(session, store, project_id)
        training = round_settings(session, project_id)
    plan = parse_plan(strategies, initial, batch, rounds, seeds, test_fraction, passes, unit,
                      start, cost, region)
    total = len(plan.strategies) * len(plan.seeds) * (plan.rounds + 1)
    done = []

    def report(row):
        done.append(row)
        progress(len(done) / total, f"{row['strategy']} seed {row['seed']} round "
                                    f"{row['round']}: cost {row['cost']}, F1 {row['f1']:.3f}",
                 True)

    rows, summary = run(images, labels, names, plan, out, training, progress=report,
                        should_stop=should_stop)
    return {"rows": rows, "summary": summary["strategies"], "folder": str(out),
            "n_images": len(images), "plan": {"unit": plan.unit, "start": plan.start,
                                              "cost": plan.cost, "region": plan.region}}


def latest_result(session: Session, actor: Actor, project_id: int) -> tuple[jobs.JobInfo | None,
                                                                            list[dict]]:
    """The project's newest finished simulation job and its curve rows."""
    for job in jobs.list_jobs(session, actor, project_id, limit=200):
        if job.kind == "simulate" and job.state == JobState.done:
            return job, list(job.result.get("rows", []))
    return None, []


def curves_figure(rows: list[dict], plan: dict | None = None):
    """The learning-curve figure (plotly) for simulation rows, against the plan's cost."""
    from models.simulation_plan import figure
    plan = plan or {}
    return figure(rows, cost=plan.get("cost", "images"), unit=plan.get("unit", "image"))
