"""The model a new project starts from (issue 20): the built-in nuclei model, none, or the
active model of another project the user can see.

The chosen model becomes the new project's first, active model version, so the first image
opened shows its cells as editable suggestions and the first training fine-tunes it.

- "builtin:nuclei-v1": the weights shipped in `models/pretrained/nuclei-v1.cellloop` go into the
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
from app.services.project_settings import STARTED_LOOP
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


def _card_path(name: str = BUILTIN_NAME) -> Path:
    return BUILTIN_DIR / f"{name}.json"


def _read_card(name: str) -> dict | None:
    try:
        data = json.loads(_card_path(name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _weights_path(card: dict, name: str = BUILTIN_NAME) -> Path:
    """The weights file the card names (`models.builtin` writes `<name>.cellloop`)."""
    weights = card.get("weights") if isinstance(card.get("weights"), dict) else {}
    return BUILTIN_DIR / Path(str(weights.get("file") or f"{name}.cellloop")).name


def builtin_available(name: str = BUILTIN_NAME) -> bool:
    """Whether the built-in model's card and the weights it names are installed."""
    card = _read_card(name)
    return card is not None and _weights_path(card, name).is_file()


def default_choice() -> str:
    """The built-in model when it is installed, else none."""
    return BUILTIN if builtin_available() else NONE


def builtin_card(name: str = BUILTIN_NAME) -> dict:
    """The built-in model's card (`models.builtin.train_builtin` writes it: name, weights
    {file, sha256}, architecture, input_mapping, normalisation, postprocess, test scores)."""
    card = _read_card(name)
    if card is None:
        raise ValidationError(f"The built-in model {name} is not installed, or its card "
                              f"{_card_path(name)} cannot be read.")
    if not _weights_path(card, name).is_file():
        raise ValidationError(f"The weights of the built-in model {name} are missing "
                              f"({_weights_path(card, name)}).")
    return card


def card_score(card: dict) -> float | None:
    """The card's headline score: the macro F1 over its groups' test images."""
    places = [card.get("test"), card.get("metrics"), card]
    for place in places:
        if not isinstance(place, dict):
            continue
        for key in ("macro_f1", "f1"):
            value = place.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def _card_sha256(card: dict) -> str | None:
    weights = card.get("weights") if isinstance(card.get("weights"), dict) else {}
    return weights.get("sha256") or card.get("sha256")


def _card_mapping(card: dict) -> str:
    mapping = card.get("input_mapping")
    if isinstance(mapping, dict):
        mapping = mapping.get("name")
    return str(mapping or BUILTIN_NAME)


ARCHITECTURE_KEYS = ("in_channels", "n_classes", "width", "depth", "dropout",
                     "bottleneck_dropout")


def _f1_text(value) -> str:
    return f"F1 {value:.2f}" if isinstance(value, (int, float)) else "F1 not measured"


def builtin_label(card: dict | None = None) -> str:
    card = builtin_card() if card is None else card
    score = card_score(card)
    text = (f"macro F1 {score:.2f} on its test images" if score is not None
            else "F1 not measured")
    return f"Built-in nuclei model ({BUILTIN_NAME}) — {text}"


def version_score(metrics: dict) -> float | None:
    """A version's headline score: its validation F1 (or Dice) when trained in its project,
    else the score its starting model came with (macro F1 on the built-in model's test
    images, or the F1 in the project it was copied from)."""
    metrics = metrics or {}
    for key in ("f1", "dice", "macro_f1", "source_f1"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


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
    rows = [(p, mv) for p, mv in session.execute(query).all()
            if (mv.settings or {}).get("kind") != "counting"]     # counting models: no outlines
    for project, mv in sorted(rows, key=lambda r: (r[0].name.lower(), r[0].id)):
        out.append(Choice(f"{PROJECT_PREFIX}{project.id}",
                          f"{project.name}: active model #{mv.id} "
                          f"({_f1_text(version_score(mv.metrics))})"))
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
    weights = _weights_path(card)
    data = weights.read_bytes()
    expected = _card_sha256(card)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ValidationError(f"The built-in model's weights ({weights.name}) do not match "
                              "the sha256 in its card; reinstall the model files.")
    key = store.put_bytes(data)         # content addressed: one blob for every project
    # no "f1": that key is the project's own validation F1 (effort curve, versions table);
    # the card's scores were measured on other images (measured_on says which)
    test = card.get("test") if isinstance(card.get("test"), dict) else {}
    metrics = {k: v for k, v in test.items() if k != "groups"}
    score = card_score(card)
    if score is not None:
        metrics["macro_f1"] = score
    if isinstance(test.get("groups"), dict):
        metrics["groups"] = test["groups"]
    metrics["measured_on"] = f"the {BUILTIN_NAME} test images"
    architecture = card.get("architecture") if isinstance(card.get("architecture"), dict) \
        else {}
    mv = ModelVersion(
        project_id=project.id, parent_id=None, weights_blob_key=key,
        architecture={k: architecture[k] for k in ARCHITECTURE_KEYS if k in architecture},
        normalisation=dict(card.get("normalisation") or {}),
        settings={"starting_model": BUILTIN, "input_mapping": _card_mapping(card),
                  "postprocess": dict(card.get("postprocess") or {}),
                  "builtin": {"name": card.get("name", BUILTIN_NAME),
                              "version": card.get("version"), "note": card.get("note"),
                              "created": card.get("created")}},
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
    if (active.settings or {}).get("kind") == "counting":
        raise ValidationError(f"The active model of {source.name!r} counts points; a new "
                              "project starts from a model that draws outlines.")
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
    # the source's validation scores were measured on its images, not this project's: kept
    # apart from "f1" (this project's own validation F1)
    source_metrics = dict(active.metrics or {})
    metrics = {"source": source_metrics, "measured_on": f"in {source.name!r}"}
    score = version_score(source_metrics)
    if score is not None:
        metrics["source_f1"] = score
    if isinstance(source_metrics.get("n_images"), int):
        metrics["n_images"] = source_metrics["n_images"]
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
    version, or None for "none". Records the choice in the project's settings and, with a
    model and no loop settings stored yet, the loop's settings for a start from a model
    (`project_settings.STARTED_LOOP`: regions, stratified random)."""
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
    settings = {**(project.settings or {}), "starting_model": choice}
    if mv is not None and "active_learning" not in settings:
        # a model to correct from the start: the queue serves regions (STARTED_LOOP)
        settings["active_learning"] = dict(STARTED_LOOP)
    project.settings = settings
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
