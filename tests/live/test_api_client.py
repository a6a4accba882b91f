"""The HTTP API's round trip through `cellloop_client`, against CellLoop started as run.sh
starts it (gunicorn with two web workers, a Celery worker per queue, a relative data
directory): a token from the CLI, upload a folder, annotate through the API, train, predict,
download the masks as arrays and the model as a file. A pipeline user's journey, so it runs
in the journey tier (`-m journey`)."""
import numpy as np
import pytest

from cellloop_client import ApiError, Client
from tests.images_data import nuclei, tiff
from tests.live.harness import TINY_TRAINING, LiveApp

pytestmark = [pytest.mark.journey, pytest.mark.slow]


@pytest.fixture
def site(tmp_path):
    app = LiveApp(tmp_path / "site")
    try:
        app.cli("init-db")
        app.cli("create-user", "boss", "--admin", stdin="boss-password-1\n")
        app.cli("create-user", "vic", stdin="vic-password-1\n")
        app.cli("create-project", "API", "--owner", "boss", "--starting-model", "none")
        app.cli("add-member", "API", "vic", "viewer")
        for queue in ("gpu", "cpu"):
            app.start_worker(queue)
        app.start_web()
        yield app
    finally:
        app.stop()


def test_upload_annotate_train_predict_download(site, tmp_path):
    token = site.cli("create-token", "boss", "--name", "round trip", "--write").stdout.strip()
    site.set_training(TINY_TRAINING, project="API")
    client = Client(site.base, token, timeout=120)
    folder = tmp_path / "plate"
    folder.mkdir()
    truth = {}
    for k in range(5):
        img, labels = nuclei((96, 96), n=8, seed=k)
        (folder / f"field{k}.tif").write_bytes(tiff(img))
        truth[f"field{k}.tif"] = labels
    results = client.upload_folder("API", folder, progress=False)
    assert [r["status"] for r in results] == ["imported"] * 5, results
    ids = {i["name"]: i["id"] for i in client.images("API")}
    for name in sorted(ids)[:4]:                       # annotate four through the API
        assert client.upload_annotation(ids[name], truth[name])["status"] == "attached"
    assert np.array_equal(client.annotation(ids["field0.tif"]) > 0, truth["field0.tif"] > 0)

    job = client.wait(client.train("API", epochs=2), timeout=600, progress=False)
    assert job["state"] == "done" and job["result"], job
    (model,) = client.models("API")
    assert model["is_active"]

    target = [ids["field4.tif"], ids["field0.tif"]]
    done = client.wait(client.predict("API", target), timeout=600, progress=False)
    assert set(done["result"]["counts"]) == {"field4.tif", "field0.tif"}
    masks = client.predictions("API", target)
    assert set(masks) == set(target)
    for image_id, labels in masks.items():
        assert labels.shape == (96, 96) and labels.dtype.kind == "u"
        name = next(n for n, i in ids.items() if i == image_id)
        assert len(set(np.unique(labels).tolist()) - {0}) == done["result"]["counts"][name]
    assert client.prediction_json(ids["field4.tif"])["model_version_id"] == model["id"]

    img, _ = nuclei((96, 96), n=8, seed=42)
    (tmp_path / "new.tif").write_bytes(tiff(img))
    segmented = client.segment("API", [tmp_path / "new.tif", folder / "field1.tif"],
                               timeout=600, progress=False)
    assert set(segmented) == {"new.tif", "field1.tif"}
    assert all(m.shape == (96, 96) for m in segmented.values())

    path = client.download_model(model["id"], tmp_path / "models", format="cellloop")
    assert path.suffix == ".cellloop" and path.stat().st_size > 1000

    viewer = Client(site.base, site.cli("create-token", "vic", "--name", "read").stdout.strip())
    assert [p["name"] for p in viewer.projects()] == ["API"]
    with pytest.raises(ApiError) as refused:
        viewer.train("API")
    assert refused.value.code == "read_only_token"
    assert viewer.prediction(ids["field4.tif"]).shape == (96, 96)
