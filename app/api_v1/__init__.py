"""The versioned HTTP API, `/api/v1`, for scripts, pipelines and other tools (the routes the
pages use stay in `app.api`). A thin adapter, like the pages: each view validates its input
(pydantic, `schemas`), calls one service with the caller from `auth.actor()`, and shapes the
answer. The route table (`registry`) also builds the OpenAPI document (`openapi`).

Modules: `registry` (route table, blueprint), `auth` (bearer tokens; browser sessions read
only), `errors` (JSON errors with stable codes), `schemas`, `files` (TIFF and model file
responses), and one module of routes per resource."""
from __future__ import annotations

import pydantic
from flask import Flask
from werkzeug.exceptions import HTTPException

from app.api_v1 import annotations as _annotations
from app.api_v1 import images as _images
from app.api_v1 import jobs as _jobs
from app.api_v1 import models as _models
from app.api_v1 import openapi as _openapi
from app.api_v1 import projects as _projects
from app.api_v1.auth import authenticate, log_use
from app.api_v1.errors import error, http_error, internal_error, invalid_input, service_error
from app.api_v1.registry import bp
from app.errors import ServiceError

ROUTE_MODULES = (_projects, _images, _annotations, _models, _jobs, _openapi)   # register routes

bp.before_request(authenticate)
bp.after_request(log_use)
bp.register_error_handler(ServiceError, service_error)
bp.register_error_handler(pydantic.ValidationError, invalid_input)
bp.register_error_handler(HTTPException, http_error)
bp.register_error_handler(Exception, internal_error)


@bp.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    return error(404, "not_found", f"No such endpoint: /api/v1/{rest}; see /api/v1/docs.")


def init_api_v1(server: Flask) -> None:
    """Mount /api/v1 on the server."""
    server.register_blueprint(bp)
