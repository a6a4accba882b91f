"""The model a new project starts from (issue 20): the built-in nuclei model, none, or the
active model of another project the user can see.

The chosen model becomes the new project's first, active model version, so the first image
opened shows its cells as editable suggestions and the first training fine-tunes it.

- "builtin:nuclei-v1": the weights shipped in `models/pretrained/nuclei-v1.pt` go into the
  blob store (content addressed: every project that starts from them shares one blob) and a
  version row is added with the architecture, normalisation and scores of its card
  (`nuclei-v1.json`). The built-in model reads one input channel whatever the project's
  channels (its meta's `input_mapping` maps RGB, fluorescence and brightfield to it).
- "project:<id>": the other project's active version is copied (same weights blob; `view`
  in that project is required, else NotFound).
- "none": nothing; the first cells are drawn by hand.

Torch-free: the card is read as JSON and the weights are handled as bytes, so the web
tier can offer and apply the choice.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, PermissionDenied, ValidationError
from app.permissions import Actor, require
from app.services import model_versions
from app.tables import Membership, ModelVersion, Project
from storage.blobstore import BlobStore

# Where the built-in models live (tests point this at a stand-in).
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "models" / "pretrained"
BUILTIN_NAME = "nuclei-v1"
BUILTIN = f"builtin:{BUILTIN_NAME}"
NONE = "none"
PROJECT_PREFIX = "project:"


@dataclass(frozen=True)
class Choice:
    value: str            # "builtin:nuclei-v1", "none" or "project:<id>"
    label: str


def _files(name: str = BUILTIN_NAME) -> tuple[Path, Path]:
    return BUILTIN_DIR / f"{name}.pt", BUILTIN_DIR / f"{name}.json"


def builtin_available(name: str = BUILTIN_NAME) -> bool:
    """Whether the built-in model's weights and card are installed."""
    weights, card = _files(name)
    return weights.is_file() and card.is_file()


def default_choice() -> str:
    """The built-in model when it is installed, else none."""
    return BUILTIN if builtin_available() else NONE


def builtin_card(name: str = BUILTIN_NAME) -> dict:
    """The built-in model's card (JSON: name, sha256, architecture, normalisation, scores)."""
    weights, card = _files(name)
    if not (weights.is_file() and card.is_file()):
        raise ValidationError(f"The built-in model {name} is not installed "
                              f"({weights.name} and {card.name} in {BUILTIN_DIR}).")
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"The card of the built-in model {name} cannot be read "
                              f"({exc}).") from None
    if not isinstance(data, dict):
        raise ValidationError(f"The card of the built-in model {name} is not a JSON object.")
    return data


def card_score(card: dict) -> float | None:
    """The card's headline score: macro F1 over its groups if given, else F1."""
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    for value in (metrics.get("macro_f1"), card.get("macro_f1"), metrics.get("f1"),
                  card.get("f1")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _f1_text(value) -> str:
    return f"F1 {value:.2f}" if isinstance(value, (int, float)) else "F1 not measured"


def builtin_label(card: dict | None = None) -> str:
    card = builtin_card() if card is None else card
    score = card_score(card)
    where = " on its test images" if score is not None else ""
    return f"Built-in nuclei model ({BUILTIN_NAME}) — {_f1_text(score)}{where}"


def _version_score(mv: ModelVersion) -> float | None:
    metrics = mv.metrics or {}
    value = metrics.get("macro_f1", metrics.get("f1", metrics.get("dice")))
    return value if isinstance(value, (int, float)) else None


def choices(session: Session, actor: Actor) -> list[Choice]:
    """The starting models `actor` may pick, the default first: the built-in model (when
    installed), none, then the active model of every project the actor can view."""
    if not actor.is_active:
        raise PermissionDenied("Your account is deactivated.")
    out = []
    if builtin_available():
        try:
            out.append(Choice(BUILTIN, builtin_label()))
        except ValidationError:
            pass                  # an unreadable card: not offered (apply says why)
    out.append(Choice(NONE, "None: draw the first cells by hand"))
    query = (select(Project, ModelVersion).join(ModelVersion,
                                                ModelVersion.project_id == Project.id)
             .where(ModelVersion.is_active.is_(True),
                    ModelVersion.weights_blob_key.is_not(None)))
    if not actor.is_admin:          # members see their projects (any role); admins all
        if actor.id is None:
            return out
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == actor.id)
    rows = session.execute(query).all()
    for project, mv in sorted(rows, key=lambda r: (r[0].name.lower(), r[0].id)):
        out.append(Choice(f"{PROJECT_PREFIX}{project.id}",
                          f"{project.name}: active model #{mv.id} "
                          f"({_f1_text(_version_score(mv))})"))
    return out


def normalise(choice: str | None) -> str:
    """The canonical form of a choice ("builtin" -> "builtin:nuclei-v1"); ValidationError
    when it is none of the three kinds. None means the default."""
    if choice is None:
        return default_choice()
    text = str(choice).strip()
    if text.lower() in ("builtin", BUILTIN):
        return BUILTIN
    if text.lower() == NONE:
        return NONE
    if text.startswith(PROJECT_PREFIX) and text[len(PROJECT_PREFIX):].strip().isdigit():
        return f"{PROJECT_PREFIX}{int(text[len(PROJECT_PREFIX):])}"
    raise ValidationError(f"Unknown starting model {text!r}: choose {BUILTIN}, {NONE} or "
                          f"{PROJECT_PREFIX}<project id>.")


def input_mapping_of(session: Session, mv: ModelVersion) -> str | None:
    """The input mapping a version inherits (its own setting, else that of the version it
    was fine-tuned from), or None: then it reads exactly its project's channels."""
    seen = set()
    while mv is not None and mv.id not in seen:
        seen.add(mv.id)
        settings = mv.settings or {}
        if settings.get("input_mapping"):
            return settings["input_mapping"]
        parent = settings.get("fine_tuned_from")
        mv = session.get(ModelVersion, parent) if isinstance(parent, int) else None
    return None


def _activate(session: Session, project_id: int, mv: ModelVersion) -> ModelVersion:
    for other in session.scalars(select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.is_active.is_(True))):
        other.is_active = False
    session.add(mv)
    session.flush()
    return mv


def _apply_builtin(session: Session, actor: Actor, store: BlobStore, project: Project
                   ) -> ModelVersion:
    card = builtin_card()
    weights, _ = _files()
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if card.get("sha256") and card["sha256"] != digest:
        raise ValidationError(f"The built-in model's weights ({weights.name}) do not match "
                              "its card's sha256; reinstall the model files.")
    key = store.put_bytes(data)
    metrics = dict(card.get("metrics") or {}) if isinstance(card.get("metrics"), dict) else {}
    score = card_score(card)
    if score is not None:
        metrics.setdefault("f1", score)    # the one score pages show (on its own test set)
    for extra in ("per_group", "groups", "scores"):
        if extra in card and extra not in metrics:
            metrics[extra] = card[extra]
    metrics["measured_on"] = card.get("measured_on") or f"the {BUILTIN_NAME} test images"
    mv = ModelVersion(
        project_id=project.id, parent_id=None, weights_blob_key=key,
        architecture=dict(card.get("architecture") or {}),
        normalisation=dict(card.get("normalisation") or {}),
        settings={"starting_model": BUILTIN,
                  "input_mapping": card.get("input_mapping") or BUILTIN_NAME,
                  "postprocess": dict(card.get("postprocess") or {})},
        metrics=metrics, curve=[], training_data=[], is_active=True,
        created_by_id=actor.id)
    return _activate(session, project.id, mv)


def _apply_copy(session: Session, actor: Actor, project: Project, source_id: int
                ) -> ModelVersion:
    if source_id == project.id:
        raise ValidationError("A project cannot start from its own model.")
    source = require(session, actor, source_id, "view")
    active = model_versions.active_version(session, source_id)
    if active is None or active.weights_blob_key is None:
        raise ValidationError(f"Project {source.name!r} has no active model to start from.")
    mapping = input_mapping_of(session, active)
    n_in = (active.architecture or {}).get("in_channels")
    n_channels = len(project.channels or [])
    if not mapping and isinstance(n_in, int) and n_in != n_channels:
        raise ValidationError(
            f"The active model of {source.name!r} reads {n_in} channel(s); this project has "
            f"{n_channels}. Start from the built-in model or none, or give the project "
            f"{n_in} channel(s).")
    settings = {k: v for k, v in (active.settings or {}).items()
                if k not in ("fine_tuned_from", "ensemble_of")}
    settings.update({"starting_model": f"{PROJECT_PREFIX}{source_id}",
                     "copied_from": {"project_id": source_id, "project_name": source.name,
                                     "model_version_id": active.id}})
    if mapping:
        settings["input_mapping"] = mapping
    metrics = {**(active.metrics or {}),
               "measured_on": f"validation images of {source.name!r}"}
    mv = ModelVersion(
        project_id=project.id, parent_id=None, weights_blob_key=active.weights_blob_key,
        architecture=dict(active.architecture or {}),
        normalisation=dict(active.normalisation or {}), settings=settings, metrics=metrics,
        curve=list(active.curve or []), training_data=[], is_active=True,
        created_by_id=actor.id)
    return _activate(session, project.id, mv)


def apply(session: Session, actor: Actor, store: BlobStore | None, project_id: int,
          choice: str | None) -> int | None:
    """Give project `project_id` its starting model (owners): the id of the new active
    version, or None for "none". Records the choice in the project's settings."""
    project = require(session, actor, project_id, "manage")
    choice = normalise(choice)
    mv = None
    if choice == BUILTIN:
        if store is None:
            raise ValueError("the built-in starting model needs the blob store (pass store=)")
        mv = _apply_builtin(session, actor, store, project)
    elif choice.startswith(PROJECT_PREFIX):
        source_id = int(choice[len(PROJECT_PREFIX):])
        try:
            mv = _apply_copy(session, actor, project, source_id)
        except NotFound:
            raise NotFound(f"No project with id {source_id} that you can see.") from None
    project.settings = {**(project.settings or {}), "starting_model": choice}
    session.flush()
    return mv.id if mv is not None else None


def suggests_on_open(session: Session, actor: Actor, project_id: int) -> bool:
    """Whether the annotation workspace may show the active model's cells on its own when an
    untouched image opens: the project has an active model (the actor must see it)."""
    require(session, actor, project_id, "view")
    return model_versions.active_version(session, project_id) is not None


def describe(settings: dict) -> str | None:
    """How a model version page names a starting model ("built-in nuclei-v1", "copy of
    Lab #3"), or None for a version trained here."""
    settings = settings or {}
    start = settings.get("starting_model")
    if not start:
        return None
    if start.startswith("builtin:"):
        return f"built-in {start.split(':', 1)[1]}"
    copied = settings.get("copied_from") or {}
    if copied:
        return (f"copy of {copied.get('project_name', 'another project')} "
                f"#{copied.get('model_version_id', '?')}")
    return start
