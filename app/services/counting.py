"""Counting projects (annotation mode "points"): train a counting model from the clicked
points (models.counting), keep it as a model version like a segmentation model (versions,
activation, rollback), and count images with it.

A counting version is marked `settings["kind"] == "counting"`; its weights blob is a
counting model file (models.counting.counter_to_bytes), which the segmentation loaders
refuse (model_versions.load says so). Validation: the mean absolute count error (MAE) on
held-out images, counted inside their annotated region; a new model is activated when its
MAE is no worse than the active counting model's on the same images.

Points are stored `[x, y, cls]` (storage.points); the model takes (y, x)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sqlalchemy.orm import Session

from app.db import Database
from app.errors import ValidationError
from app.permissions import Actor, require
from app.services import model_versions, queries
from app.services.project_settings import AUTO, STAIN, clean_counting, counting_from
from app.services.training_progress import Report
from app.tables import Annotation, Image, ModelVersion, Project
from storage.blobstore import BlobStore, get_array

log = logging.getLogger(__name__)
KIND = "counting"
BUDGET_FOR_STEPS = 0.8          # of a time budget: the training steps (the rest: validation)
ARCHITECTURE = "counting-unet"


def is_points_project(project: Project) -> bool:
    return (project.settings or {}).get("annotation_mode") == "points"


def is_counting(mv: ModelVersion | None) -> bool:
    return mv is not None and (mv.settings or {}).get("kind") == KIND


@dataclass
class PointData:
    images: list = field(default_factory=list)      # (C, Y, X) raw
    points: list = field(default_factory=list)      # (N, 2) float (y, x)
    regions: list = field(default_factory=list)     # (Y, X) bool or None
    refs: list = field(default_factory=list)


def _yx(points) -> np.ndarray:
    return np.array([[float(p[1]), float(p[0])] for p in points or []], np.float32).reshape(-1, 2)


def point_annotated_count(session: Session, project_id: int) -> int:
    """Images whose newest annotation is a points annotation (clicks, or none saved as
    "no cells")."""
    return len(_newest(session, project_id))


def _newest(session: Session, project_id: int) -> list[tuple[Image, Annotation]]:
    rows = session.execute(queries.newest_annotations().add_columns(Image)
                           .join(Image, Image.id == Annotation.image_id)
                           .where(*queries.included_images(project_id))
                           .order_by(Image.id)).all()
    return [(image, ann) for ann, image in rows
            if image.shape[0] == 1 and (ann.points or ann.label_blob_key is None
                                        or not ann.n_cells)]


def gather_points(session: Session, store: BlobStore, project_id: int) -> PointData:
    """The newest annotation of every live, non-excluded 2-D image, as clicks (y, x)."""
    data = PointData()
    for image, ann in _newest(session, project_id):
        data.images.append(get_array(store, image.blob_key)[0])
        data.points.append(_yx(ann.points))
        data.regions.append(get_array(store, ann.region_blob_key).astype(bool)
                            if ann.region_blob_key else None)
        data.refs.append({"image_id": image.id, "annotation_version": ann.version})
    return data


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else int(image.shape[0])


def load_counter(store: BlobStore, mv: ModelVersion):
    """The CountingModel of a counting version (hash-checked)."""
    from models.counting import CountingError, counter_from_bytes
    if not is_counting(mv):
        raise ValidationError(f"Model #{mv.id} draws outlines; it does not count points.")
    try:
        return counter_from_bytes(store.get_bytes(mv.weights_blob_key),
                                  expected_sha256=mv.weights_blob_key)
    except (CountingError, ValueError, KeyError) as exc:
        raise ValidationError(f"Model #{mv.id} cannot be loaded: {exc}.") from None


def count_in_region(model, image: np.ndarray, region: np.ndarray | None,
                    mc_samples: int = 0) -> float:
    """The model's count of `image` inside `region` (all of it when None)."""
    from models.counting import count_image
    return float(count_image(model, image, mc_samples=mc_samples, region=region).count)


def mae(model, data: PointData, ids: list[int]) -> float:
    errors = [abs(count_in_region(model, data.images[i], data.regions[i]) - len(data.points[i]))
              for i in ids]
    return float(np.mean(errors)) if errors else 0.0


def _params(project: Project, seed: int, threads: int):
    """CountingParams from the project's settings["counting"] (defaults otherwise)."""
    from models.counting import CountingParams
    settings = dict((project.settings or {}).get("counting") or {})
    fields = set(CountingParams.__dataclass_fields__) - {"input_mapping"}  # choose_input
    params = CountingParams(**{k: v for k, v in settings.items() if k in fields})
    params.seed, params.threads = seed, threads
    return params


def set_counting_settings(session: Session, actor: Actor, project_id: int,
                          settings: dict) -> dict:
    """Owners choose how the project's counting model is trained: what it regresses
    (target), what it reads (input_mapping), steps and sigma (limits:
    `project_settings.COUNTING_LIMITS`). The next training uses them; a model whose target
    or input differs from the active one's starts from scratch (and still has to beat it)."""
    project = require(session, actor, project_id, "manage")
    merged = {**((project.settings or {}).get("counting") or {}), **clean_counting(settings)}
    project.settings = {**(project.settings or {}), "counting": merged}
    session.flush()
    return counting_settings(session, actor, project_id)


def counting_settings(session: Session, actor: Actor, project_id: int) -> dict:
    """What the project's next counting training uses: the defaults with what its owners
    changed; without a chosen target, the active counting model's (`keeps_target`)."""
    project = require(session, actor, project_id, "view")
    stored = dict((project.settings or {}).get("counting") or {})
    active = model_versions.active_version(session, project_id)
    if "target" not in stored and is_counting(active):
        # versions from before the target was recorded are densities (the only head then)
        stored["target"] = (active.settings or {}).get("target") or "density"
    return counting_from(stored).as_dict()


def choose_input(settings: dict, previous, images: list) -> str | None:
    """The input the next counting model reads: the owners' choice; with none ("auto"), the
    active counting model's, and for a project's first counting model the nuclear stain
    when every point-annotated image (training and validation) is an 8-bit bright-field
    colour image (H&E-like: models.nucleus_contrast.is_brightfield_colour), the image's
    channels otherwise. On bone-marrow H&E the stain counted closer than the colours
    (docs/benchmarks.md, "Counting from points")."""
    from models.nucleus_contrast import is_brightfield_colour
    chosen = settings.get("input_mapping", AUTO)
    if chosen != AUTO:
        return chosen
    if previous is not None:
        return previous.meta.get("input_mapping")
    return STAIN if images and all(is_brightfield_colour(i) for i in images) else None


def describe_input(mapping: str | None) -> str:
    """What a counting model reads, in words."""
    return {AUTO: "what suits the images", None: "the image's channels",
            STAIN: "the nuclear stain"}.get(mapping, f"the {mapping!r} mapping")


def keeps_target(params, settings: dict, previous) -> None:
    """A project that counts already keeps its active model's target unless its settings
    name one: a project from before centre heat-maps became the default stays on its
    density (and fine-tuned) until its owner sets settings["counting"]["target"]."""
    if previous is not None and "target" not in settings:
        params.target = previous.target


def train_counting_project(db: Database, store: BlobStore, project_id: int,
                           user_id: int | None, progress: Report,
                           should_stop: Callable[[], bool], *, fine_tune: bool = True,
                           epochs: int | None = None, max_minutes: float | None = None,
                           seed: int = 0, threads: int = 0) -> dict:
    """Train a counting model on the project's clicked points, store it as a new version
    and activate it unless the active counting model counts the validation images better.
    Same contract as training.train_project (progress, should_stop, the job's result);
    A counting model trains the number of steps of the project's counting settings (400 by
    default), stopping early when `max_minutes` (the time budget the user typed) runs out
    (most of it for the steps; counting the validation images and saving take the rest).
    `epochs` (outline training's unit) does not apply to it."""
    from models.count_interval import calibrate_interval
    from models.counting import counter_to_bytes, train_counter
    from models.training import split

    progress(0.0, "loading the point annotations", True)
    with db.session_scope() as session:
        project = session.get(Project, project_id)
        data = gather_points(session, store, project_id)
        params = _params(project, seed, threads)
        if max_minutes is not None:
            params.max_seconds = max(1.0, float(max_minutes) * 60 * BUDGET_FOR_STEPS)
        parent = model_versions.active_version(session, project_id)
        parent = parent if is_counting(parent) else None
        parent_id = parent.id if parent else None
        previous = load_counter(store, parent) if parent else None
        settings = dict((project.settings or {}).get("counting") or {})
        keeps_target(params, settings, previous)
    if not data.images:
        raise ValidationError("There are no point-annotated 2-D images to train on (z-stacks "
                              "are not counted yet).")
    if (previous is not None and not previous.meta.get("input_mapping")
            and previous.in_channels != _channels(data.images[0])):
        previous = None      # the channel layout changed: train from scratch, compare nothing
    params.input_mapping = choose_input(settings, previous, data.images)
    # the project's input mapping changed (e.g. the colours -> the nuclear stain): the active
    # model is still compared, but the new one starts from scratch on the new input
    # likewise when the target changed (a density and a centre heat-map are other outputs)
    init = previous if (fine_tune and previous is not None and
                        previous.meta.get("input_mapping") == params.input_mapping and
                        previous.target == params.target) else None
    train_ids, val_ids = split(len(data.images), 0.2, seed)
    t0 = time.monotonic()

    def on_step(event: dict) -> None:
        if event.get("phase") == "train":
            step, steps = int(event.get("step", 0)), max(1, int(event.get("steps", 1)))
            progress(0.05 + 0.85 * step / steps,
                     f"training the counting model: step {step} of {steps}, "
                     f"loss {float(event.get('loss', 0)):.4f}", False)
        elif event.get("phase") == "calibrate":
            progress(0.9, "choosing the peak threshold on the training clicks", False)

    model = train_counter([data.images[i] for i in train_ids],
                          [data.points[i] for i in train_ids],
                          [data.regions[i] for i in train_ids], params, progress=on_step,
                          cancel=should_stop, init=init)
    steps_run = int(model.meta["training"]["steps"])
    progress(0.93, f"counting {len(val_ids)} validation image(s)", True)
    new_mae = mae(model, data, val_ids)
    interval = calibrate_interval(model, [data.images[i] for i in val_ids],
                                  [data.points[i] for i in val_ids],
                                  [data.regions[i] for i in val_ids]) if val_ids else None
    if interval is not None:       # saved with the model: its counts get this interval
        model.meta["interval"] = interval
    old_mae = mae(previous, data, val_ids) if previous is not None else None
    activate = old_mae is None or new_mae <= old_mae
    seconds = time.monotonic() - t0
    n_val_cells = float(np.mean([len(data.points[i]) for i in val_ids])) if val_ids else 0.0
    metrics = {"mae": round(new_mae, 3), "n_images": len(val_ids),
               "mean_count": round(n_val_cells, 2), "previous_active": old_mae,
               "seconds": round(seconds, 1), "steps": steps_run,
               "steps_planned": int(params.steps), "train_images": len(train_ids),
               "interval": interval}
    progress(0.97, "saving the model", True)
    key = store.put_bytes(counter_to_bytes(model))
    with db.session_scope() as session:
        tuned_from = parent_id if init is not None else None
        mv = model_versions.add_version(
            session, project_id, activate, parent_id=tuned_from,
            weights_blob_key=key,
            architecture={"name": ARCHITECTURE,
                          **dict(model.meta.get("architecture") or {})},
            normalisation=dict(model.meta.get("normalisation") or {}),
            settings={"kind": KIND, "fine_tuned_from": tuned_from, "seed": seed,
                      "steps": steps_run, "sigma": float(params.sigma),
                      "input_mapping": model.meta.get("input_mapping"),
                      "target": model.target},
            metrics=metrics, curve=list(model.meta.get("curve") or []),
            training_data=data.refs, created_by_id=user_id)
        version_id = mv.id
    verdict = ("activated (the first counting model of the project)" if old_mae is None else
               f"activated (MAE {new_mae:.2f} vs {old_mae:.2f} for the model that was active)"
               if activate else
               f"not activated: the active model's MAE is {old_mae:.2f} on the same images")
    outcome = (f"Counting model #{version_id}: validation mean absolute count error "
               f"{new_mae:.2f} cells per image (mean {n_val_cells:.1f} cells) on {len(val_ids)} "
               f"image{'s' if len(val_ids) != 1 else ''}; {verdict}. Trained {steps_run} steps "
               f"on {len(train_ids)} image{'s' if len(train_ids) != 1 else ''} in "
               f"{seconds / 60:.1f} min, reading {describe_input(params.input_mapping)}.")
    log.info("project %s: %s", project_id, outcome)
    return {"model_version_id": version_id, "activated": activate, "reason": verdict,
            "metrics": metrics, "n_images": len(data.images), "ensemble_members": [],
            "outcome": outcome}


def count_uncertainty(result) -> float:
    """How unsure a count is, comparable across images: the spread of the MC-dropout
    sampled counts relative to the count (std / (count + 1))."""
    return float(result.std) / (float(result.count) + 1.0)


def score_counts(store: BlobStore, model, image_blobs: dict[int, str],
                 progress: Callable[..., None], should_stop: Callable[[], bool],
                 mc_samples: int = 16) -> dict[int, float]:
    """{image id: count uncertainty} of the pool images under a counting model (the
    active-learning score of a points project)."""
    from models.cancel import Cancelled
    from models.counting import count_image
    scores = {}
    for n, (image_id, blob) in enumerate(image_blobs.items()):
        if should_stop():
            raise Cancelled()
        progress(n / max(1, len(image_blobs)), f"counted {n} of {len(image_blobs)} images")
        result = count_image(model, get_array(store, blob)[0], mc_samples=mc_samples,
                             seed=image_id)
        scores[image_id] = count_uncertainty(result)
    return scores
