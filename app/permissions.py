"""Roles and the one function every service calls before it reads or changes a project.

Roles are ordered: viewer < annotator < reviewer < owner; site admins are above all.
A user who is not a member gets `NotFound`, not `PermissionDenied`, so project ids cannot
be probed for existence.
"""
from __future__ import annotations

import enum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, PermissionDenied
from app.tables import Membership, Project


class Role(enum.IntEnum):
    viewer = 1
    annotator = 2
    reviewer = 3
    owner = 4

    @classmethod
    def parse(cls, name: str) -> "Role":
        try:
            return cls[name.strip().lower()]
        except (KeyError, AttributeError):
            raise ValueError(f"unknown role {name!r}; choose one of: "
                             + ", ".join(r.name for r in cls)) from None


ROLE_NAMES = [r.name for r in sorted(Role, reverse=True)]

# What each action needs. Services name the action, not the role, so the table is the policy.
ACTIONS: dict[str, Role] = {
    "view": Role.viewer,
    "export": Role.viewer,
    "annotate": Role.annotator,
    "import": Role.annotator,
    "review": Role.reviewer,
    "train": Role.reviewer,
    "manage": Role.owner,      # members, settings, delete images, models
}


class Actor(Protocol):
    id: int | None
    username: str
    is_admin: bool
    is_active: bool


class SystemActor:
    """The trusted caller of the CLI and of jobs: acts with site-admin rights."""

    id = None
    username = "system"
    is_admin = True
    is_active = True


SYSTEM = SystemActor()


def role_of(session: Session, actor: Actor, project_id: int) -> Role | None:
    """The actor's effective role in the project (owner for site admins), or None."""
    if actor.is_admin:
        return Role.owner
    if actor.id is None:
        return None
    name = session.scalar(select(Membership.role).where(
        Membership.project_id == project_id, Membership.user_id == actor.id))
    return Role[name] if name else None


def require(session: Session, actor: Actor, project_id: int, action: str) -> Project:
    """Return the project if `actor` may do `action` in it; raise otherwise."""
    needed = ACTIONS[action]
    if not getattr(actor, "is_active", False):
        raise PermissionDenied("Your account is deactivated.")
    project = session.get(Project, project_id) if isinstance(project_id, int) else None
    role = role_of(session, actor, project_id) if project is not None else None
    if project is None or role is None:
        raise NotFound("No such project, or you are not a member of it.")
    if role < needed:
        raise PermissionDenied(
            f"You are {role.name} in {project.name!r}; this needs {needed.name} or above.")
    return project


def require_admin(actor: Actor) -> None:
    if not (getattr(actor, "is_active", False) and actor.is_admin):
        raise PermissionDenied("Only site admins can do this.")
