"""The OpenAPI document of /api/v1 is valid OpenAPI 3.1, lists every route the server has
under /api/v1 (and nothing else), and is served without credentials with a browsable page."""
import re

from openapi_spec_validator import validate

from app.api_v1.registry import ENDPOINTS


def test_the_document_validates_and_lists_every_route(server):
    r = server.test_client().get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    served = set()
    for rule in server.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api_v1.unknown":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert len(documented) == len(ENDPOINTS) >= 20
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (method, path)
            if path not in ("/api/v1/openapi.json", "/api/v1/docs"):
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"}
    images = doc["paths"]["/api/v1/projects/{project_id}/images"]
    assert {p["name"] for p in images["get"]["parameters"]} >= {"project_id", "page",
                                                                "per_page", "status", "sort"}
    assert "multipart/form-data" in images["post"]["requestBody"]["content"]
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


def test_the_docs_page_lists_the_endpoints(server):
    r = server.test_client().get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "/api/v1/projects/{project_id}/images" in page and "openapi.json" in page
    assert "<script" not in page
