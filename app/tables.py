"""The relational data model (SQLAlchemy 2.0 typed declarative).

Pixels never live here: images, masks and weights are blobs in the blob store and rows
only hold their keys. Annotations are append-only versions. Schema changes go through
Alembic (`app/migrations`), never `create_all` outside tests.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, MetaData,
                        String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.states import ACTIVE_JOB_STATES, ImageStatus, JobState, ReviewState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change/reset: sessions issued before it stop working.
    auth_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user",
                                                           cascade="all, delete-orphan")

    # flask-login protocol (plain attributes, no Flask import here)
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}:{self.auth_version}"

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # [{"name": "DAPI", "color": "#0000ff"}, ...]
    channels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # [{"name": "nucleus", "color": "#ff0000"}, ...]
    classes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    memberships: Mapped[list["Membership"]] = relationship(back_populates="project",
                                                           cascade="all, delete-orphan")


class Membership(Base):
    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        Index("ix_image_project_status", "project_id", "status"),
        Index("ix_image_project_name", "project_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    blob_key: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    shape: Mapped[list[Any]] = mapped_column(JSON)          # e.g. [Z, C, Y, X] in `axes` order
    dtype: Mapped[str] = mapped_column(String(16))
    axes: Mapped[str] = mapped_column(String(8))            # e.g. "ZCYX"
    channel_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.new)   # ImageStatus
    quality_note: Mapped[str] = mapped_column(Text, default="")
    assigned_to_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    uploaded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # A downsampled copy (longest side <= 2048) for display of large images; None if small.
    preview_blob_key: Mapped[Optional[str]] = mapped_column(String(128))
    # Soft delete: hidden everywhere, history still exported, until purged.
    deleted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class Annotation(Base):
    __tablename__ = "annotation"
    __table_args__ = (UniqueConstraint("image_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("annotation.id", ondelete="SET NULL"))
    author_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    label_blob_key: Mapped[Optional[str]] = mapped_column(String(128))    # instance label mask
    region_blob_key: Mapped[Optional[str]] = mapped_column(String(128))   # annotated-region mask
    points: Mapped[list[Any]] = mapped_column(JSON, default=list)         # counting mode
    # {"<label id>": <class index>} for cells not of the project's first class
    cell_classes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_cells: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(32), default="manual")     # manual/model-corrected/imported
    source_model_version_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL"))
    review_state: Mapped[str] = mapped_column(String(16), default=ReviewState.submitted)
    review_comment: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # Saved from a draft: what changed against what the annotator started from, and the
    # active editing seconds (`app.services.annotations.save`); None for imported versions.
    # {"added", "deleted", "reshaped", "kept", "reclassified", "corrections",
    #  "active_seconds", "base": "suggestion"|"version"|"empty", "base_model_version_id"}
    effort: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


class Draft(Base):
    """One user's unsaved edits of one image: a base (the annotation they opened, or a model
    suggestion) plus an ordered list of edits (`app.imaging.shapes.apply_edit` dicts) and the
    edits undone since (for redo). Saving turns it into a new Annotation version."""
    __tablename__ = "draft"
    __table_args__ = (UniqueConstraint("image_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    base_annotation_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("annotation.id", ondelete="SET NULL"))
    base_label_key: Mapped[Optional[str]] = mapped_column(String(128))
    base_region_key: Mapped[Optional[str]] = mapped_column(String(128))
    base_classes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    base_points: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(32), default="manual")
    source_model_version_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL"))
    edits: Mapped[list[Any]] = mapped_column(JSON, default=list)
    undone: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # {"last": unix time of the last event, "seconds": active editing seconds since the last
    # save}: opening, each edit, undo/redo and the save are events (app.services.drafts)
    activity: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    rev: Mapped[int] = mapped_column(Integer)     # bumped by every change (optimistic lock)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": rev}


class ModelVersion(Base):
    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    weights_blob_key: Mapped[Optional[str]] = mapped_column(String(128))
    architecture: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    normalisation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    curve: Mapped[list[Any]] = mapped_column(JSON, default=list)
    training_data: Mapped[list[Any]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Score(Base):
    __tablename__ = "score"
    __table_args__ = (
        UniqueConstraint("image_id", "model_version_id", "strategy"),
        Index("ix_score_rank", "model_version_id", "strategy", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    # 1 = picked first by a batch strategy (diversity); the queue serves ranked images first
    rank: Mapped[Optional[int]] = mapped_column(Integer)
    # the project queues regions (loop unit "region"): the image's most useful region,
    # [y0, x0, y1, x1] in pixels; the value and rank are that region's
    region: Mapped[Optional[list[Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


EXCLUSIVE_ACTIVE = (f"state IN ({', '.join(repr(str(s)) for s in ACTIVE_JOB_STATES)}) "
                    "AND kind IN ('train', 'score')")   # as migration 0007 wrote it


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_project_state", "project_id", "state"),
        # one queued or running train/score job per project, whatever races (migration 0007)
        Index("uq_job_one_active_exclusive", "project_id", "kind", unique=True,
              sqlite_where=text(EXCLUSIVE_ACTIVE), postgresql_where=text(EXCLUSIVE_ACTIVE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[Optional[int]] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued)   # JobState
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str] = mapped_column(String(128), default="")   # Celery hostname running it
    # The run that holds a running job (worker hostname, pid and a random part): only it may
    # finish the job; it beats `heartbeat_at` while it runs (see app.jobs.runner).
    owner: Mapped[str] = mapped_column(String(128), default="", server_default="")
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    queue: Mapped[str] = mapped_column(String(32), default="", server_default="")
    sent_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)   # last handed to Celery
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class LoginAttempt(Base):
    """Failed and successful logins: the rate limiter counts them across all workers."""
    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_ip_at", "ip", "at"),
        Index("ix_login_attempt_username_at", "username", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UserSession(Base):
    """One login (a browser's session): the session cookie carries a random token whose hash
    is this row's id. Logout, a password change or deactivation revokes the row, so a copied
    cookie stops working on the server, not only in the browser that logged out."""
    __tablename__ = "user_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)   # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    auth_version: Mapped[int] = mapped_column(Integer)   # the user's auth_version at login
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(256), default="")


class DisplaySetting(Base):
    """One user's display settings for one project: per channel its colour, visibility and
    contrast limits (null limits: each image's own automatic ones). Restored whenever the
    user opens an image of the project, in the viewer and in the workspace."""
    __tablename__ = "display_setting"
    __table_args__ = (UniqueConstraint("user_id", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"),
                                            index=True)
    # [{"color": "#00ff00", "visible": true, "low": 100.0 | null, "high": 2000.0 | null}]
    channels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    """A personal access token for the HTTP API (`/api/v1`): requests carry the token in
    `Authorization: Bearer ...`; only its SHA-256 is stored (the token is shown once). It acts
    as its user, with that user's project roles, and only reads unless `scope` is "write".
    The current minute's request count (`window_start`, `window_count`) is the rate limit."""
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)   # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16))                    # shown to tell tokens apart
    scope: Mapped[str] = mapped_column(String(8))                      # "read" | "write"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    last_used_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    last_used_ip: Mapped[str] = mapped_column(String(64), default="", server_default="")
    window_start: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    window_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
