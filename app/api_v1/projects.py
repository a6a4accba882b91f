"""/api/v1: the caller's account, and projects (list, get)."""
from __future__ import annotations

from flask import g

from app.api_v1.auth import actor
from app.api_v1.registry import endpoint
from app.api_v1.schemas import MeOut, ProjectList, ProjectOut, TokenOut
from app.context import get_session
from app.services import projects


@endpoint("GET", "/me", summary="The account (and token) of this request", tag="account",
          role=None, response=MeOut)
def get_me():
    user, info = actor(), g.get("api_token")
    return MeOut(id=user.id, username=user.username, is_admin=user.is_admin,
                 token=TokenOut.model_validate(info) if info is not None else None)


@endpoint("GET", "/projects", summary="Projects you are a member of (all, for site admins)",
          tag="projects", role=None, response=ProjectList)
def list_projects():
    return ProjectList(items=projects.list_projects(get_session(), actor()))


@endpoint("GET", "/projects/<int:project_id>", summary="One project", tag="projects",
          response=ProjectOut)
def get_project(project_id: int):
    return ProjectOut.model_validate(projects.get_project(get_session(), actor(), project_id))
