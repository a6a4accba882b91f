"""Projects and their members.

Who may create a project is a site setting (`PROJECT_CREATORS`: everyone, or admins only);
the creator becomes its owner. Everything else goes through `permissions.require`: members
see a project, owners manage members, channels and classes. A project always keeps at least
one owner.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.permissions import ROLE_NAMES, Actor, Role, require, role_of
from app.services.project_settings import clean_training, training_from, without_started_loop
from app.states import ImageStatus
from app.tables import Annotation, Draft, Image, Membership, Project, User
from app.services import queries, starting_models
from storage.blobstore import BlobStore

log = logging.getLogger(__name__)

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_CHANNELS = [{"name": "nuclei", "color": "#ffffff"}]
DEFAULT_CLASSES = [{"name": "cell", "color": "#ff3b30"}]
PROJECT_CREATORS = ("everyone", "admins")


@dataclass(frozen=True)
class ProjectSummary:
    id: int
    name: str
    description: str
    role: str
    n_images: int
    n_annotated: int
    created_at: dt.datetime
    channels: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    status_counts: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Fraction of non-excluded images that are annotated or reviewed."""
        usable = self.n_images - self.status_counts.get(ImageStatus.excluded, 0)
        return self.n_annotated / usable if usable > 0 else 0.0


@dataclass(frozen=True)
class MemberInfo:
    user_id: int
    username: str
    role: str


def _clean_items(items, kind: str, default: list) -> list[dict]:
    """Validate channel/class lists: [{"name": str, "color": "#rrggbb"}, ...]."""
    if not items:
        return [dict(d) for d in default]
    cleaned, seen = [], set()
    for item in items:
        if isinstance(item, str):
            item = {"name": item}
        name = str(item.get("name", "")).strip()
        colour = str(item.get("color") or "#ffffff").strip()
        if not name or len(name) > 64:
            raise ValidationError(f"Each {kind} needs a name of 1-64 characters.")
        if name.lower() in seen:
            raise ValidationError(f"The {kind} name {name!r} appears twice.")
        if not HEX_COLOUR.match(colour):
            raise ValidationError(f"The colour of {kind} {name!r} must look like #ff8800.")
        seen.add(name.lower())
        cleaned.append({"name": name, "color": colour.lower()})
    if len(cleaned) > 32:
        raise ValidationError(f"At most 32 {kind}s.")
    return cleaned


COLOUR_NAMES = {"white": "#ffffff", "grey": "#808080", "gray": "#808080", "red": "#ff0000",
                "green": "#00ff00", "blue": "#0000ff", "cyan": "#00ffff",
                "magenta": "#ff00ff", "yellow": "#ffff00", "orange": "#ff8000"}


def parse_named_colours(text: str) -> list[dict]:
    """Parse "DAPI:#0000ff, GFP:green" as typed in a form or the CLI. The colour is optional
    (white); it may be a hex code or a common colour name, after a colon or as the last word
    ("DAPI blue" is the channel DAPI shown in blue, not a channel named "DAPI blue" in white)."""
    items = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, colon, colour = part.partition(":")
        name, colour = name.strip(), colour.strip()
        if not colon:
            words = name.rsplit(None, 1)
            if len(words) == 2 and (words[1].lower() in COLOUR_NAMES
                                    or HEX_COLOUR.match(words[1])):
                name, colour = words
        colour = COLOUR_NAMES.get(colour.lower(), colour) or "#ffffff"
        items.append({"name": name.strip(), "color": colour})
    return items


def may_create_projects(actor: Actor, creators: str = "everyone") -> bool:
    """Whether `actor` may create projects under the site's `PROJECT_CREATORS` setting."""
    if creators not in PROJECT_CREATORS:
        raise ValidationError(f"PROJECT_CREATORS must be one of {', '.join(PROJECT_CREATORS)}.")
    return bool(actor.is_active and (actor.is_admin or creators == "everyone"))


def create_project(session: Session, actor: Actor, name: str, description: str = "",
                   channels=None, classes=None, owner_id: int | None = None,
                   creators: str = "everyone", starting_model: str | None = None,
                   store: BlobStore | None = None) -> ProjectSummary:
    """Create a project; `actor` becomes owner (or `owner_id`, which only admins may pass).
    `creators` is the site setting (`Config.project_creators`): "admins" refuses others.

    `starting_model` (`app.services.starting_models`): "builtin:nuclei-v1", "none" or
    "project:<id>"; None is the default, the built-in model when it is installed, else none.
    The built-in model is put into the blob store `store` (required for it)."""
    if not actor.is_active:
        raise PermissionDenied("Your account is deactivated.")
    if not may_create_projects(actor, creators):
        raise PermissionDenied("Only site admins can create projects here; ask an admin to "
                               "create one and make you its owner.")
    name = (name or "").strip()
    if not 1 <= len(name) <= 120:
        raise ValidationError("Project names need 1-120 characters.")
    if session.scalar(select(Project.id).where(func.lower(Project.name) == name.lower())):
        raise Conflict(f"A project called {name!r} exists already.")
    if owner_id is not None and owner_id != actor.id and not actor.is_admin:
        raise PermissionDenied("Only site admins can create projects for someone else.")
    owner_id = owner_id if owner_id is not None else actor.id
    if owner_id is None or session.get(User, owner_id) is None:
        raise ValidationError("A project needs an owner who has an account.")
    if starting_model is None and store is None:
        starting_model = starting_models.NONE     # callers without a blob store: no model
    starting_model = starting_models.normalise(starting_model)
    project = Project(name=name, description=(description or "").strip()[:4000],
                      channels=_clean_items(channels, "channel", DEFAULT_CHANNELS),
                      classes=_clean_items(classes, "class", DEFAULT_CLASSES),
                      settings={}, created_by_id=actor.id)
    session.add(project)
    session.flush()
    session.add(Membership(project_id=project.id, user_id=owner_id, role=Role.owner.name))
    session.flush()
    starting_models.apply(session, actor, store, project.id, starting_model)
    log.info("%s created project %r (id %s), starting model %s", actor.username, name,
             project.id, starting_model)
    return get_project(session, actor, project.id)


def _status_counts(session: Session, project_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {pid: {} for pid in project_ids}
    if not project_ids:
        return counts
    rows = session.execute(select(Image.project_id, Image.status, func.count())
                           .where(Image.project_id.in_(project_ids), *queries.live_images())
                           .group_by(Image.project_id, Image.status))
    for pid, status, n in rows:
        counts[pid][status] = n
    return counts


def _summary(project: Project, role: Role, counts: dict[str, int]) -> ProjectSummary:
    return ProjectSummary(
        id=project.id, name=project.name, description=project.description, role=role.name,
        n_images=sum(counts.values()),
        n_annotated=counts.get(ImageStatus.annotated, 0) + counts.get(ImageStatus.reviewed, 0),
        created_at=project.created_at, channels=list(project.channels),
        classes=list(project.classes), status_counts=dict(counts),
        settings=dict(project.settings or {}))


def list_projects(session: Session, actor: Actor) -> list[ProjectSummary]:
    """Projects the actor is a member of (all projects for site admins), newest first."""
    if not actor.is_active:
        raise PermissionDenied("Your account is deactivated.")
    if actor.is_admin:
        rows = [(p, Role.owner) for p in session.scalars(
            select(Project).order_by(Project.created_at.desc(), Project.id.desc()))]
    elif actor.id is None:
        rows = []
    else:
        rows = [(p, Role[r]) for p, r in session.execute(
            select(Project, Membership.role).join(Membership)
            .where(Membership.user_id == actor.id)
            .order_by(Project.created_at.desc(), Project.id.desc()))]
    counts = _status_counts(session, [p.id for p, _ in rows])
    return [_summary(p, role, counts[p.id]) for p, role in rows]


def get_project(session: Session, actor: Actor, project_id: int) -> ProjectSummary:
    project = require(session, actor, project_id, "view")
    role = role_of(session, actor, project_id)
    return _summary(project, role, _status_counts(session, [project.id])[project.id])


def find_project_id(session: Session, name_or_id: str) -> int:
    """Resolve a CLI argument (project name or numeric id) to an id."""
    text = str(name_or_id).strip()
    if text.isdigit() and session.get(Project, int(text)) is not None:
        return int(text)
    pid = session.scalar(select(Project.id).where(Project.name == text))
    if pid is None:
        raise NotFound(f"No project called {text!r}.")
    return pid


def list_members(session: Session, actor: Actor, project_id: int) -> list[MemberInfo]:
    require(session, actor, project_id, "view")
    order = case({name: i for i, name in enumerate(ROLE_NAMES)}, value=Membership.role)
    rows = session.execute(select(User.id, User.username, Membership.role).join(Membership)
                           .where(Membership.project_id == project_id)
                           .order_by(order, User.username))
    return [MemberInfo(uid, uname, role) for uid, uname, role in rows]


def _owner_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Membership).where(
        Membership.project_id == project_id, Membership.role == Role.owner.name))


def set_member(session: Session, actor: Actor, project_id: int, username: str,
               role: str) -> MemberInfo:
    """Add a member by username, or change their role (owners only)."""
    require(session, actor, project_id, "manage")
    name = (username or "").strip()
    user = session.scalar(select(User).where(User.username == name))
    if user is None:  # "Alice" for "alice", when only one account is spelled that way
        same = session.scalars(select(User).where(func.lower(User.username) == name.lower())
                               .limit(2)).all()
        user = same[0] if len(same) == 1 else None
    if user is None:
        raise NotFound(f"No user called {username!r}.")
    return _set_role(session, actor, project_id, user, role)


def set_role(session: Session, actor: Actor, project_id: int, user_id: int,
             role: str) -> MemberInfo:
    """Change an existing member's role (owners only)."""
    require(session, actor, project_id, "manage")
    membership = session.scalar(select(Membership).where(
        Membership.project_id == project_id, Membership.user_id == user_id))
    if membership is None:
        raise NotFound("That user is not a member of this project.")
    return _set_role(session, actor, project_id, membership.user, role)


def _set_role(session: Session, actor: Actor, project_id: int, user: User,
              role: str) -> MemberInfo:
    try:
        new_role = Role.parse(role)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    membership = session.scalar(select(Membership).where(
        Membership.project_id == project_id, Membership.user_id == user.id))
    if membership is None:
        session.add(Membership(project_id=project_id, user_id=user.id, role=new_role.name))
    else:
        if (membership.role == Role.owner.name and new_role != Role.owner
                and _owner_count(session, project_id) <= 1):
            raise ValidationError("A project needs at least one owner; make someone else owner first.")
        membership.role = new_role.name
    session.flush()
    log.info("%s set %s as %s in project %s", actor.username, user.username, new_role.name,
             project_id)
    return MemberInfo(user.id, user.username, new_role.name)


def member_candidates(session: Session, actor: Actor, project_id: int, text: str,
                      limit: int = 10) -> list[str]:
    """Usernames an owner may add (active accounts not yet members) containing `text`,
    names starting with it first; for the add-member field's autocomplete."""
    require(session, actor, project_id, "manage")
    text = (text or "").strip().lower()
    if len(text) < 2:               # no browsing of every account name from one letter
        return []
    members = select(Membership.user_id).where(Membership.project_id == project_id)
    name = func.lower(User.username)
    rows = session.scalars(
        select(User.username).where(User.is_active.is_(True), User.id.notin_(members),
                                    name.contains(text, autoescape=True))
        .order_by(name.startswith(text, autoescape=True).desc(), name)
        .limit(max(1, min(int(limit), 50))))
    return list(rows)


def remove_member(session: Session, actor: Actor, project_id: int, user_id: int) -> None:
    require(session, actor, project_id, "manage")
    membership = session.scalar(select(Membership).where(
        Membership.project_id == project_id, Membership.user_id == user_id))
    if membership is None:
        raise NotFound("That user is not a member of this project.")
    if membership.role == Role.owner.name and _owner_count(session, project_id) <= 1:
        raise ValidationError("A project needs at least one owner; make someone else owner first.")
    session.delete(membership)
    session.flush()
    log.info("%s removed user %s from project %s", actor.username, user_id, project_id)


def _point_classes(points) -> set[int]:
    """Classes of counting points ([x, y, class] triples)."""
    return {int(p[2]) for p in (points or []) if isinstance(p, (list, tuple)) and len(p) > 2}


def _edit_classes(edit) -> set[int]:
    """Classes an edit uses: its `cls`, and those of a snapshot's classes and points."""
    if not isinstance(edit, dict):
        return set()
    used = {int(edit["cls"])} if edit.get("cls") is not None else set()
    used.update(int(v) for v in (edit.get("classes") or {}).values())   # snapshot edits
    return used | _point_classes(edit.get("points"))


def _classes_in_use(session: Session, project_id: int) -> set[int]:
    """Class indices used by any saved version or unsaved draft of the project's images:
    cells' classes, counting points' classes, and those kept in drafts' edit histories."""
    used: set[int] = set()
    images = select(Image.id).where(Image.project_id == project_id)
    for classes, points in session.execute(select(Annotation.cell_classes, Annotation.points)
                                           .where(Annotation.image_id.in_(images))):
        used.update(int(v) for v in (classes or {}).values())
        used |= _point_classes(points)
    for base, points, edits, undone in session.execute(
            select(Draft.base_classes, Draft.base_points, Draft.edits, Draft.undone)
            .where(Draft.image_id.in_(images))):
        used.update(int(v) for v in (base or {}).values())
        used |= _point_classes(points)
        for edit in [*(edits or []), *(undone or [])]:
            used |= _edit_classes(edit)
    return used


def update_channels_and_classes(session: Session, actor: Actor, project_id: int,
                                channels=None, classes=None) -> ProjectSummary:
    """Owners rename and recolour channels and cell classes after creation.

    Channels: once the project has images their number is fixed (every image has that many);
    names and colours may change. Classes are stored by position in annotations, so a class
    keeps its place: rename or recolour it, add classes at the end, and remove only classes
    at the end that no saved version or draft uses. `None` leaves a list as it is."""
    project = require(session, actor, project_id, "manage")
    if channels is not None:
        new_channels = _clean_items(channels, "channel", project.channels)
        has_images = session.scalar(select(func.count()).select_from(Image)
                                    .where(Image.project_id == project_id))
        if has_images and len(new_channels) != len(project.channels):
            raise ValidationError(
                f"This project's images have {len(project.channels)} channel(s); rename or "
                f"recolour them, but keep {len(project.channels)}.")
        project.channels = new_channels
    if classes is not None:
        new_classes = _clean_items(classes, "class", project.classes)
        if len(new_classes) < len(project.classes or []):
            used = sorted(i for i in _classes_in_use(session, project_id)
                          if i >= len(new_classes))
            if used:
                names = ", ".join(project.classes[i]["name"] for i in used
                                  if i < len(project.classes))
                raise ValidationError(
                    f"Class(es) {names} are used by annotations; they cannot be removed "
                    "(rename them instead).")
        project.classes = new_classes
    session.flush()
    log.info("%s changed the channels/classes of project %s", actor.username, project_id)
    return get_project(session, actor, project_id)


def set_training_settings(session: Session, actor: Actor, project_id: int,
                          settings: dict) -> dict:
    """Owners tune the project's training defaults (network size, patches, schedule; limits:
    `project_settings.TRAINING_LIMITS`)."""
    project = require(session, actor, project_id, "manage")
    clean = clean_training(settings)
    merged = {**(project.settings or {}).get("training", {}), **clean}
    after = training_from(merged)
    if after.lr * after.pull >= 1:
        raise ValidationError(f"pull ({after.pull:g}) times the learning rate ({after.lr:g}) "
                              "must be below 1; at 1 or more fine-tuning would change nothing.")
    project.settings = {**(project.settings or {}), "training": merged}
    session.flush()
    return project.settings["training"]


def training_settings(session: Session, actor: Actor, project_id: int) -> dict:
    """The project's training settings: the defaults with what its owners changed."""
    project = require(session, actor, project_id, "view")
    return training_from((project.settings or {}).get("training") or {}).as_dict()


ANNOTATION_MODES = ("outlines", "points")


def set_annotation_mode(session: Session, actor: Actor, project_id: int, mode: str) -> str:
    """Owners choose how cells are marked: outlines (segmentation) or points (counting)."""
    project = require(session, actor, project_id, "manage")
    if mode not in ANNOTATION_MODES:
        raise ValidationError(f"Annotation mode must be one of {', '.join(ANNOTATION_MODES)}.")
    settings = {**(project.settings or {}), "annotation_mode": mode}
    if mode == "points" and "active_learning" in settings:
        settings["active_learning"] = without_started_loop(settings["active_learning"])
    project.settings = settings
    session.flush()
    return mode


def set_self_review(session: Session, actor: Actor, project_id: int, allowed: bool) -> bool:
    """Owners choose whether a reviewer may accept a version they saved themselves (off by
    default: a second pair of eyes)."""
    project = require(session, actor, project_id, "manage")
    project.settings = {**(project.settings or {}), "allow_self_review": bool(allowed)}
    session.flush()
    return bool(allowed)


def allows_self_review(project) -> bool:
    return bool((project.settings or {}).get("allow_self_review", False))
