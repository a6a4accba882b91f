"""The Images page's upload callbacks as hand-made POSTs: the server checks the user, whatever
the page showed (a viewer has no upload zones, but could still send the request)."""
import base64
import json

import pytest
from sqlalchemy import func, select

from app.tables import Annotation
from tests.images_data import nuclei, tiff


def forge(dash_app, client, first_output: str, inputs: list, state: list):
    """POST the callback whose first output is `first_output`, as the browser would."""
    key = next(k for k in dash_app.callback_map if k.startswith(f"..{first_output}..."))
    outputs = []
    for part in key.strip(".").split("..."):
        ident, prop = part.split(".", 1)
        outputs.append({"id": ident, "property": prop.split("@")[0]})
    body = {"output": key, "outputs": outputs, "inputs": inputs, "state": state,
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs]}
    return client.post("/_dash-update-component", json=body)


def mask_upload(dash_app, client, project_id, name, data):
    url = "data:image/tiff;base64," + base64.b64encode(data).decode()
    return forge(dash_app, client, "images-mask-result.children",
                 [{"id": "images-mask-upload", "property": "contents", "value": [url]}],
                 [{"id": "images-mask-upload", "property": "filename", "value": [name]},
                  {"id": "images-mask-replace", "property": "value", "value": True},
                  {"id": "images-project-id", "property": "data", "value": project_id},
                  {"id": "images-job", "property": "data", "value": []},
                  {"id": "images-refresh", "property": "data", "value": 0}])


@pytest.mark.parametrize("username, allowed", [("viewer", False), ("outsider", False),
                                               ("annotator", False), ("reviewer", True)])
def test_forged_label_image_upload(dash_app, login, world, db, image_id, username, allowed):
    _img, lab = nuclei((60, 80))
    response = mask_upload(dash_app, login(username), world["project_id"], "a_masks.tif",
                           tiff(lab))
    assert response.status_code == 200
    text = json.dumps(response.get_json())
    with db.session_scope() as s:
        n = s.scalar(select(func.count(Annotation.id)))
    if allowed:
        assert n == 1 and "1 label images attached" in text
    else:
        assert n == 0
        # the form asks to replace existing annotations: a reviewer's decision
        assert ("this needs reviewer" if username != "outsider" else "not a member") in text
