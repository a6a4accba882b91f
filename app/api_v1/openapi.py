"""The OpenAPI 3.1 document of `/api/v1`, built from the route table (`registry.ENDPOINTS`)
and the pydantic models' JSON schemas, so it cannot drift from what the views accept and
return; served at /api/v1/openapi.json, and as a page at /api/v1/docs (plain HTML, no
scripts from elsewhere: the app runs on closed networks)."""
from __future__ import annotations

import functools

from flask import jsonify, render_template_string
from pydantic import BaseModel

from app.api_v1.registry import ENDPOINTS, MAX_ID, Endpoint, endpoint
from app.api_v1.schemas import ErrorOut

ERRORS = {400: "Invalid input (`invalid`, `bad_request`)",
          401: "No usable token (`unauthorized`)",
          403: "Role too low, read-only token, or a browser session writing (`forbidden`, "
               "`read_only_token`, `token_required`)",
          404: "No such thing, or not a member of its project (`not_found`)",
          429: "Too many requests (`rate_limited`, see Retry-After)"}
PATH_TYPES = {"int": {"type": "integer", "minimum": 0, "maximum": MAX_ID}, "string": {"type": "string"},
              "path": {"type": "string"}}


class _Schemas:
    def __init__(self):
        self.components: dict = {}

    def ref(self, model: type[BaseModel]) -> dict:
        if model.__name__ not in self.components:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            self.components.update(schema.pop("$defs", {}))
            self.components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def properties(self, model: type[BaseModel]) -> tuple[dict, list]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.components.update(schema.pop("$defs", {}))
        return schema.get("properties", {}), schema.get("required", [])


def _operation(ep: Endpoint, schemas: _Schemas) -> dict:
    op = {"operationId": ep.name, "summary": ep.summary, "tags": [ep.tag]}
    notes = [ep.description] if ep.description else []
    if not ep.public:
        notes.append(f"Needs: {ep.role or 'any account'}"
                     f"{' and a read-write token' if ep.write else ''}.")
    if notes:
        op["description"] = "\n\n".join(notes)
    params = [{"name": name, "in": "path", "required": True, "schema": PATH_TYPES[conv]}
              for name, conv in ep.path_params]
    if ep.query is not None:
        props, required = schemas.properties(ep.query)
        for name, prop in props.items():
            param = {"name": name, "in": "query", "required": name in required,
                     "schema": {k: v for k, v in prop.items() if k != "description"}}
            if prop.get("description"):
                param["description"] = prop["description"]
            params.append(param)
    if params:
        op["parameters"] = params
    if ep.body is not None:
        needed = bool(ep.body.model_json_schema().get("required"))   # else: may be left out
        op["requestBody"] = {"required": needed, "content": {
            "application/json": {"schema": schemas.ref(ep.body)}}}
    elif ep.files:
        props = {name: ({"type": "array", "items": {"type": "string",
                                                    "contentMediaType": "application/octet-stream"},
                         "description": text} if name.endswith("s") else
                        {"type": "string", "contentMediaType": "application/octet-stream",
                         "description": text})
                 for name, text in ep.files.items()}
        if ep.form is not None:
            extra, _ = schemas.properties(ep.form)
            props.update(extra)
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": props, "required": list(ep.files)}}}}
    content = {}
    if ep.response is not None:
        content["application/json"] = {"schema": schemas.ref(ep.response)}
    if ep.media != "application/json":
        content[ep.media] = {"schema": {"type": "string",
                                        "contentMediaType": ep.media}}
    ok = {"description": "OK" if ep.status == 200 else
          {201: "Created", 202: "Accepted: a job was queued"}.get(ep.status, "OK")}
    if content:
        ok["content"] = content
    op["responses"] = {str(ep.status): ok}
    if ep.public:
        op["security"] = []
    else:
        error = {"content": {"application/json": {"schema": schemas.ref(ErrorOut)}}}
        for status, text in ERRORS.items():
            op["responses"][str(status)] = {"description": text, **error}
    return op


@functools.cache
def document() -> dict:
    """The OpenAPI document (built once per process: the route table is fixed at import)."""
    schemas = _Schemas()
    paths: dict = {}
    for ep in ENDPOINTS.values():
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "CellLoop API", "version": "1.0.0",
                 "description": "Projects, images, annotations, models, jobs and predictions "
                                "of a CellLoop server. Authenticate with a personal access "
                                "token from your account page: `Authorization: Bearer "
                                "<token>`. Errors are `{\"error\": {\"code\", \"message\"}}`."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in dict.fromkeys(ep.tag for ep in ENDPOINTS.values())],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer",
                          "description": "A personal access token (account page, or `python "
                                         "-m app create-token`)"},
                "browser": {"type": "apiKey", "in": "cookie", "name": "session",
                            "description": "A logged-in browser session: GET only"}}},
        "security": [{"token": []}, {"browser": []}],
    }


@endpoint("GET", "/openapi.json", summary="This API's OpenAPI 3.1 document", tag="meta",
          public=True)
def openapi_json():
    return jsonify(document())


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CellLoop API v1</title>
<link rel="stylesheet" href="/vendor/bootstrap.min.css"></head>
<body class="container py-4"><h1>CellLoop API v1</h1>
<p>{{ doc.info.description }}</p>
<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).
Python: <code>from cellloop_client import Client</code> (see the README).</p>
{% for tag in tags %}<h2 class="h4 mt-4">{{ tag }}</h2>
<table class="table table-sm"><tbody>
{% for path, method, op in operations if op.tags[0] == tag %}
<tr><td style="width:5rem"><span class="badge text-bg-{{ colours.get(method, 'secondary') }}">
{{ method | upper }}</span></td><td><code>{{ path }}</code>
<div>{{ op.summary }}</div>
{% if op.description %}<div class="text-muted small" style="white-space:pre-line">{{ op.description }}</div>{% endif %}
{% if op.parameters %}<div class="small">Parameters: {% for p in op.parameters %}<code>{{ p.name }}</code> ({{ p.in }}){{ ", " if not loop.last }}{% endfor %}</div>{% endif %}
</td></tr>{% endfor %}</tbody></table>{% endfor %}
</body></html>"""


@endpoint("GET", "/docs", summary="This API as a page", tag="meta", public=True,
          media="text/html")
def docs_page():
    doc = document()
    operations = [(path, method, op) for path, ops in doc["paths"].items()
                  for method, op in ops.items()]
    return render_template_string(
        PAGE, doc=doc, operations=operations, tags=[t["name"] for t in doc["tags"]],
        colours={"get": "primary", "post": "success", "delete": "danger"})
