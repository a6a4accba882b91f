"""The route table of `/api/v1`: each endpoint is declared once with `endpoint(...)`, which
registers the Flask view and records what the OpenAPI document says about it (`ENDPOINTS`):
its query and body models (pydantic, validated here before the view runs), its response
model or media type, and the least role it needs.

A view receives its path arguments plus `query=` / `body=` (validated models) and returns a
pydantic model (sent as JSON with the endpoint's status), or a Flask response (files).
Writes commit after the view returns; a `ServiceError` rolls back and becomes a JSON error
(`app.api_v1.errors`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel

from app.context import get_session
from app.errors import NotFound

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MAX_ID = 2**63 - 1    # the largest SQL INTEGER: a larger id names nothing (and the database
                      # driver cannot even take it as a parameter)


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str                         # Flask rule under /api/v1, e.g. /images/<int:image_id>
    name: str                         # Flask endpoint and OpenAPI operationId
    summary: str
    tag: str
    role: str | None = "viewer"       # least project role (None: any account; docs only)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    files: dict = field(default_factory=dict)   # multipart fields: {name: description}
    form: type[BaseModel] | None = None         # other multipart fields, validated
    response: type[BaseModel] | None = None
    media: str = "application/json"
    status: int = 200
    public: bool = False              # no credentials needed (the OpenAPI document, docs)
    description: str = ""

    @property
    def write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def path(self) -> str:
        """The OpenAPI path, e.g. /api/v1/images/{image_id}."""
        return "/api/v1" + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.rule)

    @property
    def path_params(self) -> list[tuple[str, str]]:
        """[(name, converter)] of the rule, e.g. [("image_id", "int")]."""
        return [(name, conv or "string")
                for conv, name in re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", self.rule)]


ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(method: str, rule: str, *, summary: str, tag: str, **options) -> Callable:
    """Declare and register an endpoint (see `Endpoint` for the options)."""
    def register(view: Callable) -> Callable:
        ep = Endpoint(method, rule, view.__name__, summary, tag,
                      description=(view.__doc__ or "").strip(), **options)
        if ep.name in ENDPOINTS:
            raise ValueError(f"two API endpoints named {ep.name}")
        ENDPOINTS[ep.name] = ep

        def run(**path_args):
            if any(isinstance(v, int) and v > MAX_ID for v in path_args.values()):
                raise NotFound("No such thing: the id is out of range.")
            kwargs = dict(path_args)
            if ep.query is not None:
                kwargs["query"] = ep.query.model_validate(request.args.to_dict())
            if ep.body is not None:          # no body at all: the model's defaults, if it has them
                data = request.get_json(force=True, silent=False) if request.get_data() else {}
                kwargs["body"] = ep.body.model_validate(data)
            if ep.form is not None:
                kwargs["form"] = ep.form.model_validate(request.form.to_dict())
            result = view(**kwargs)
            if ep.write:
                get_session().commit()
            if isinstance(result, Response):
                return result
            status = ep.status
            if isinstance(result, tuple):          # (model, status) when the status varies
                result, status = result
            if isinstance(result, BaseModel):
                return jsonify(result.model_dump(mode="json")), status
            return result

        bp.add_url_rule(rule, endpoint=ep.name, view_func=run, methods=[method])
        return view
    return register


def current_endpoint() -> Endpoint | None:
    """The endpoint of this request (None: no route matched)."""
    name = (request.endpoint or "").rpartition(".")[2]
    return ENDPOINTS.get(name) if request.blueprint == bp.name else None
