"""Request and response models of `/api/v1` (pydantic 2): they validate what comes in and
shape what goes out, and their JSON schemas are the OpenAPI document's components. Response
models read the services' dataclasses (`from_attributes`)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api_v1.registry import MAX_ID
from app.states import ImageStatus

# An id in a query or body: within SQL INTEGER (a larger one overflowed the database driver
# and answered 500 instead of 400).
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- errors
class ErrorDetail(Out):
    field: str
    message: str


class ErrorInfo(Out):
    code: str = Field(description="Stable, machine-readable: see docs/api.md")
    message: str
    details: list[ErrorDetail] | None = None


class ErrorOut(Out):
    error: ErrorInfo


# ----------------------------------------------------------------------------- account
class TokenOut(Out):
    id: int
    name: str
    prefix: str
    scope: Literal["read", "write"]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None


class MeOut(Out):
    id: int
    username: str
    is_admin: bool
    token: TokenOut | None = Field(None, description="The token of this request (None: a "
                                                     "browser session)")


# ----------------------------------------------------------------------------- projects
class ProjectOut(Out):
    id: int
    name: str
    description: str
    role: str = Field(description="Your role: owner, reviewer, annotator or viewer")
    n_images: int
    n_annotated: int
    created_at: dt.datetime
    channels: list[dict[str, Any]]
    classes: list[dict[str, Any]]
    status_counts: dict[str, int]


class ProjectList(Out):
    items: list[ProjectOut]


# ----------------------------------------------------------------------------- images
class ImagesQuery(In):
    page: int = Field(1, ge=1, le=1_000_000_000)
    per_page: int = Field(50, ge=1, le=200)
    sort: Literal["created", "name", "status", "score", "annotator", "cells"] = "created"
    descending: bool = False
    status: Literal[tuple(s.value for s in ImageStatus)] | None = None   # type: ignore[valid-type]


class ImageRowOut(Out):
    id: int
    name: str
    status: str
    width: int
    height: int
    n_planes: int
    n_channels: int
    dtype: str
    annotator: str
    n_cells: int | None
    score: float | None
    created_at: dt.datetime


class ImagePageOut(Out):
    items: list[ImageRowOut]
    total: int
    page: int
    per_page: int
    n_pages: int


class ImageOut(Out):
    id: int
    project_id: int
    name: str
    status: str
    shape: list[int] = Field(description="(Z, C, Y, X)")
    dtype: str
    channels: list[dict[str, Any]]
    quality_note: str
    annotation_version: int | None
    n_cells: int | None


class UploadResultOut(Out):
    name: str
    status: Literal["imported", "duplicate", "rejected", "attached", "skipped"]
    message: str
    image_id: int | None
    n_cells: int | None
    restored: bool = False


class UploadOut(Out):
    results: list[UploadResultOut]
    job_id: int | None = Field(None, description="Large uploads are imported by this job; "
                                                 "follow it at /api/v1/jobs/{job_id}")


class DeletedOut(Out):
    deleted: int


# ----------------------------------------------------------------------------- annotations
class VersionOut(Out):
    id: int
    version: int
    author: str | None
    created_at: dt.datetime
    source: str
    n_cells: int
    n_points: int
    review_state: str
    review_comment: str
    reviewer: str | None
    effort: dict[str, Any] | None = None


class VersionList(Out):
    items: list[VersionOut]


class ArrayFormatQuery(In):
    format: Literal["tiff", "json"] = Field(
        "tiff", description="tiff: the instance label image (uint16/uint32); json: cells as "
                            "polygons and points")


class PredictionQuery(ArrayFormatQuery):
    model: Id | None = Field(None, description="Model version id (default: the active one)")


class CellOut(Out):
    label: int
    class_index: int = 0
    polygon: list[list[float]] = Field(description="[[x, y], ...] closed, pixel centres at "
                                                   "+0.5")


class AnnotationJson(Out):
    image_id: int
    version: int
    width: int
    height: int
    n_cells: int
    source: str
    review_state: str
    cells: list[CellOut]
    points: list[list[float]] = Field(description="Counting mode: [[x, y, class], ...]")
    region: bool = Field(description="Whether only a marked region was annotated (the region "
                                     "mask is in the TIFF download's second page)")


class AnnotationUploadForm(In):
    replace: bool = Field(False, description="Add a new version even if the image has an "
                                             "annotation (reviewers and owners)")


class PolygonIn(BaseModel):
    model_config = ConfigDict(extra="ignore")     # a cell as GET ...?format=json gives it
    polygon: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        min_length=3, description="[[x, y], ...] full-resolution pixels, centres at +0.5")


class AnnotationPolygons(In):
    cells: list[PolygonIn] = Field(max_length=200_000, description=(
        "One polygon per cell (only `polygon` is read; later cells cover earlier ones)"))
    replace: bool = Field(False, description="Add a new version even if the image has an "
                                             "annotation (reviewers and owners)")


class PredictionJson(Out):
    image_id: int
    model_version_id: int
    n_cells: int
    cells: list[CellOut]


# ----------------------------------------------------------------------------- models
class ModelOut(Out):
    id: int
    project_id: int
    parent_id: int | None
    is_active: bool
    created_at: dt.datetime
    created_by: str
    metrics: dict[str, Any]
    n_training_images: int


class ModelList(Out):
    items: list[ModelOut]


class ModelDownloadQuery(In):
    format: Literal["cellloop", "torchscript", "onnx"] = "cellloop"


# ----------------------------------------------------------------------------- jobs
class JobOut(Out):
    id: int
    kind: str
    project_id: int | None
    username: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    message: str
    error: str
    result: dict[str, Any]
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class JobList(Out):
    items: list[JobOut]


class JobsQuery(In):
    limit: int = Field(50, ge=1, le=500)


class JobStart(In):
    kind: Literal["train", "score", "predict"]
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "train: the Models page's settings: epochs, max_minutes, seed, fine_tune (default "
        "true), rescore; score and predict: none"))
    image_ids: list[Id] | None = Field(None, max_length=10000, description=(
        "predict: only these images (default: every image of the project)"))


class PredictionsStart(In):
    image_ids: list[Id] | None = Field(None, min_length=1, max_length=10000, description=(
        "The images to predict (default: every image of the project)"))
