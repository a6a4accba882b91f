"""The web tier never loads torch (a worker that had run torch once forked a background
callback that hung for ever holding the SQLite write lock; callbacks now come from a job
server, pages._background, but the web tier stays light). Every page and pixel route is
exercised in a fresh interpreter, which must end without torch in sys.modules."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import sys
    from flask_login import login_user
    from app import migrate
    from app.wsgi import create_app
    from app.config import Config
    from app.permissions import SYSTEM
    from pathlib import Path
    from app.services import annotations, drafts, imports, projects, starting_models, users
    from app.tables import Job
    from tests.images_data import nuclei, tiff

    config = Config(env="testing", secret_key="test-secret-key-0123456789",
                    data_dir=sys.argv[1]).validated()
    migrate.upgrade(config)
    server = create_app(config)
    state = server.extensions["cellloop"]
    starting_models.BUILTIN_DIR = Path(sys.argv[2])     # a stand-in built-in model
    with state.db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "owner", "correct-horse-1")
        pid = projects.create_project(s, SYSTEM, "Lab", "", owner_id=owner.id,
                                      store=state.store).id   # starts from the built-in model
        img, lab = nuclei(shape=(96, 96), n=6, seed=1)
        items = [imports.ImportFile("a.tif", read=lambda: tiff(img), read_labels=lambda: tiff(lab)),
                 imports.ImportFile("b.tif", read=lambda: tiff(img[::-1].copy())),
                 imports.ImportFile("c.tif", read=lambda: tiff(img[:, ::-1].copy()))]
        imports.import_files(s, SYSTEM, state.store, pid, items, 1 << 28)
        rows = [{"strategy": n, "seed": 0, "round": r, "n_labelled": r + 1, "f1": 0.5 + r / 10,
                 "dice": 0.6, "seconds": 1.0} for n in ("random", "entropy") for r in range(3)]
        s.add(Job(kind="simulate", project_id=pid, user_id=owner.id, state="done",
                  result={"rows": rows}))
    import pages
    modules = {name: sys.modules[f"pages.{name}"] for name in pages.PAGE_MODULES}
    with server.test_request_context("/"):
        user = users.find_user(state.db.session(), "owner")
        login_user(user)
        from app.context import get_session
        actor = users.find_user(get_session(), "owner")
        login_user(actor)
        drafts.record_edit(get_session(), actor, config, state.store, 2,
                           {"op": "add", "shape": {"type": "rect", "x0": 10, "y0": 10,
                                                   "x1": 30, "y1": 30}})
        annotations.save(get_session(), actor, config, state.store, 2)
        get_session().commit()
        for name, module in modules.items():
            kwargs = {}
            if name in ("images", "jobs", "learning", "models", "project", "review"):
                kwargs = {"project_id": str(pid)}
            elif name in ("annotate", "viewer"):
                kwargs = {"image_id": "1"}
            module.layout(**kwargs)
        import json
        fresh = modules["annotate"].layout(image_id="3")      # untouched: suggests on its own
        assert '"auto_suggest": true' in json.dumps(fresh.to_plotly_json(),
                                                    default=lambda o: o.to_plotly_json())
    client = server.test_client()
    from tests.conftest import post_login
    assert post_login(client, "owner").status_code == 302
    for url in ["/projects", "/healthz", "/api/images/1/render.png", "/api/images/1/thumbnail.jpg",
                "/api/images/2/overlay.png", "/api/images/1/draft.png",
                f"/api/projects/{pid}/export.zip"]:
        assert client.get(url).status_code == 200, url
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not loaded, f"the web tier loaded torch: {loaded[:5]}"
    print("torch-free")
''')


def test_the_web_tier_never_loads_torch(tmp_path):
    from tests.starting_model_data import write_standin
    write_standin(tmp_path / "pretrained")     # torch here, in the test process, is fine
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data"),
                           str(tmp_path / "pretrained")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "torch-free" in done.stdout, done.stderr[-4000:]


IMPORTS_ONLY = textwrap.dedent('''
    import sys
    import app, app.config, app.states
    assert not [m for m in sys.modules if m.split(".")[0] in ("flask", "dash", "pages")], \\
        "app.config and app.states need neither Flask nor Dash"
    import app.wsgi
    from app.wsgi import create_app
    assert "application" not in vars(app.wsgi) and "pages" not in sys.modules, \\
        "importing the composition root builds nothing"
    print("nothing built")
''')


def test_importing_the_composition_root_builds_nothing(tmp_path):
    """gunicorn's `app.wsgi:application` is built on first access; importing `app`,
    `app.config`, `app.states` or `create_app` loads no Flask, Dash or pages."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_ONLY], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "nothing built" in done.stdout, done.stderr[-4000:]
