"""The annotation queue by region (a project whose loop unit is "region").

In region mode a person annotates one square region of an image at a time, not the whole
image (selection by region halves the labelled pixels for the same model: ViewAL, CVPR 2020):

1. scoring (`app.services.scoring`) scores every open region of every image in the pool with
   the project's strategy and keeps, per image, its most useful region: `Score.region`
   ([y0, x0, y1, x1]), with that region's value and rank;
2. the pool is the unannotated images plus the *partially* annotated ones (the newest version
   has an annotated region), whose regions under the annotated region are done;
3. the queue (`leases`) serves images by their best region; the workspace opens zoomed on it
   with the annotated region widened to it (`focus`, `widen`), and training uses
   the partial annotation (only the annotated region counts);
4. saving drops the image's region scores (`forget`), so the image leaves the queue until the
   next scoring finds what is left of it.

Counting (points) projects queue whole images.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Config
from app.permissions import Actor
from app.services import drafts, model_versions, queries
from app.services.project_settings import ProjectSettings
from app.states import QUEUE_STATUSES
from app.tables import Annotation, Draft, Image, Project, Score
from models.regions import Box, box_mask, open_regions, regions_of
from storage.blobstore import BlobStore, get_array, put_array

# around the region, the workspace also shows this share of its side on every edge (context)
CONTEXT = 0.25


def region_side(project: Project) -> int | None:
    """The region side in pixels when `project` queues regions, else None."""
    settings = ProjectSettings.of(project)
    if settings.loop.unit != "region" or (project.settings or {}).get(
            "annotation_mode") == "points":
        return None
    return int(settings.loop.region)


def partial_ids(session: Session, project_id: int) -> list[int]:
    """Included images past the queue whose newest annotation covers only a region of them."""
    newest = queries.newest_annotations().where(Annotation.region_blob_key.is_not(None)
                                                ).subquery()
    return session.scalars(select(Image.id).join(newest, newest.c.image_id == Image.id).where(
        *queries.included_images(project_id), Image.status.notin_(QUEUE_STATUSES))
        .order_by(Image.id)).all()


def annotated_region(session: Session, store: BlobStore, image_id: int
                     ) -> tuple[int | None, np.ndarray | None]:
    """(the newest annotation's id or None, its annotated-region mask: None when there is
    no annotation or it covers the whole image)."""
    ann = queries.newest_annotation(session, image_id)
    if ann is None:
        return None, None
    return ann.id, (None if ann.region_blob_key is None
                    else get_array(store, ann.region_blob_key) > 0)


def newest_ids(session: Session, image_ids) -> dict[int, int]:
    """{image id: its newest annotation's id} for the annotated ones of `image_ids`."""
    newest = queries.newest_annotations().where(Annotation.image_id.in_(list(image_ids)))
    return {ann.image_id: ann.id for ann in session.scalars(newest)}


def done_boxes(shape_yx: tuple[int, int], side: int, annotated: np.ndarray | None
               ) -> list[Box]:
    """The regions of an annotated image that are annotated (all of them when the whole
    image is): what a coverage strategy spreads away from."""
    open_ = set(open_regions(shape_yx, side, annotated)) if annotated is not None else set()
    return [b for b in regions_of(shape_yx, side) if b not in open_]


def unit_key(image_id: int, index: int) -> int:
    """A stable integer per (image, region) (random strategies draw per key)."""
    return int(image_id) * 100_003 + int(index)


def best_per_image(units: dict, scores: dict, ranks: dict) -> dict:
    """{image_id: (box, value, rank)}: each image's region picked first (lowest rank), else
    its highest score. `units`: key -> (image_id, box); `scores`: key -> ImageScore."""
    best: dict = {}
    for key, (image_id, box) in units.items():
        mine = (ranks.get(key) is None, ranks.get(key) or 0, -scores[key].value, key)
        if image_id not in best or mine < best[image_id][0]:
            best[image_id] = (mine, box, float(scores[key].value), ranks.get(key))
    return {i: (box, value, rank) for i, (_m, box, value, rank) in best.items()}


def focus(session: Session, image: Image) -> list[int] | None:
    """The region the queue serves this image for ([y0, x0, y1, x1]), under the project's
    active model and strategy; None in image mode or when the image has none."""
    return focus_of_many(session, image.project_id, [image.id]).get(image.id)


def focus_of_many(session: Session, project_id: int, image_ids) -> dict[int, list[int]]:
    """`focus` of several images of one project in one query ({image id: region})."""
    project = session.get(Project, project_id)
    active = model_versions.active_version(session, project_id)
    if region_side(project) is None or active is None:
        return {}
    strategy = ProjectSettings.of(project).loop.strategy
    rows = session.execute(select(Score.image_id, Score.region).where(
        Score.image_id.in_(list(image_ids)), Score.model_version_id == active.id,
        Score.strategy == strategy, Score.region.is_not(None)))
    return {image_id: [int(v) for v in region] for image_id, region in rows if region}


def view_range(region: list[int], width: int, height: int) -> tuple[list, list]:
    """Plotly x and y axis ranges that show `region` with CONTEXT around it (y downwards)."""
    y0, x0, y1, x1 = region
    margin = CONTEXT * max(y1 - y0, x1 - x0)
    return ([max(0.0, x0 - margin), min(float(width), x1 + margin)],
            [min(float(height), y1 + margin), max(0.0, y0 - margin)])


def widen(session: Session, actor: Actor, config: Config, store: BlobStore, draft: Draft,
          image: Image, region: list[int]) -> None:
    """Make `region` part of the draft's annotated region, so that what the person draws
    there counts, and saving annotates it:

    - a draft without edits starts from the saved version's region (nothing when none) plus
      `region`, worked out again at every opening, so a region the queue served earlier and
      nobody annotated is not kept (it would be saved as "no cells there");
    - a draft holding only the suggestion made on opening starts again from the saved
      version (the workspace suggests again), as above;
    - a draft with the person's edits, or saved before, gets a "region" edit (undoable);
    - nothing changes when the saved version, or the draft, covers the whole image."""
    shape_yx = tuple(image.shape[-2:])
    area = box_mask(shape_yx, tuple(region))
    base = session.get(Annotation, draft.base_annotation_id) if draft.base_annotation_id \
        else None
    if base is not None and base.region_blob_key is None:
        return                                # the saved version covers the whole image
    if draft.edits and drafts.only_auto_suggested(draft):
        drafts.restart(session, draft, base)  # unchecked model cells: suggest them again
    if not draft.edits:
        saved = get_array(store, base.region_blob_key) > 0 if base is not None else None
        target = area if saved is None else saved | area
        key = put_array(store, target.astype(np.uint8))
        if key != draft.base_region_key:
            draft.base_region_key = key
            session.flush()                   # (bumps the draft's revision)
        return
    current = drafts.canvas_for(config, store, draft, image).region
    if current is None or current[area].all():
        return                                # the whole image, or the region, is in it
    y0, x0, y1, x1 = region
    drafts.record_edit(session, actor, config, store, image.id, {
        "op": "region", "shape": {"type": "rect", "x0": x0, "y0": y0, "x1": x1, "y1": y1}})


def forget(session: Session, image_id: int) -> None:
    """Drop an image's region scores (its served region was just annotated)."""
    session.execute(delete(Score).where(Score.image_id == image_id, Score.region.is_not(None)))
