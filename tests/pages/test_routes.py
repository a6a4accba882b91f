"""Every page's URL reaches that page (issue 19, item 1): Dash matches `<var>` in a path
template with fnmatch's `*`, which also matches "/", so `/projects/<project_id>` once took
`/projects/3/review` and answered "No such project"."""
import re

import dash
import pytest
from dash._pages import _path_to_page

PROJECT_SUBPAGES = ("images", "review", "learning", "jobs", "models")


def test_every_template_routes_to_its_own_page(dash_app):
    templates = {m: p["path_template"] for m, p in dash.page_registry.items()
                 if p["path_template"]}
    assert "pages.review" in templates and "pages.project" in templates
    for module, template in templates.items():
        path = re.sub(r"<([^>]+)>", "7", template).strip("/")
        page, variables = _path_to_page(path)
        assert page.get("module") == module, (template, page.get("module"))
        assert set(variables.values()) == {"7"}


@pytest.mark.parametrize("sub", PROJECT_SUBPAGES)
def test_project_subpages_are_not_taken_by_the_project_page(dash_app, sub):
    page, variables = _path_to_page(f"projects/12/{sub}")
    assert page["module"] == f"pages.{sub}" and variables == {"project_id": "12"}
    page, variables = _path_to_page("projects/12")
    assert page["module"] == "pages.project" and variables == {"project_id": "12"}


def render(client, pathname: str) -> str:
    """Ask Dash's router for the page at `pathname`, as the browser does on navigation."""
    body = {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"},
                        {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "state": [], "changedPropIds": ["_pages_location.pathname"]}
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


@pytest.mark.parametrize("sub,marker", [("", "project-name"), ("/review", "review-submitted"),
                                        ("/images", "images-gallery"),
                                        ("/learning", "learning-"), ("/jobs", "jobs-"),
                                        ("/models", "models-")])
def test_each_project_url_renders_its_own_page(login, world, sub, marker):
    text = render(login("owner"), f"/projects/{world['project_id']}{sub}")
    assert "No such project" not in text and marker in text


@pytest.mark.parametrize("path", ["/projects/{pid}/settings", "/projects/{pid}/members/3",
                                  "/images/{image_id}/history", "/annotate/{image_id}/x"])
def test_an_address_with_no_page_is_page_not_found_not_no_such_project(login, world, image_id,
                                                                       path):
    """A new user's walk: a member opening /projects/1/settings was told "No such project,
    or you are not a member of it" (the template's <project_id> took "1/settings")."""
    text = render(login("viewer"), path.format(pid=world["project_id"], image_id=image_id))
    assert "Page not found" in text and "No such project" not in text


def test_real_pages_still_take_their_variables(login, world, image_id):
    text = render(login("viewer"), f"/images/{image_id}")
    assert "viewer-name" in text and "Page not found" not in text
