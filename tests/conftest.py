"""Shared fixtures: a fresh data directory and database per test served by the process's one
web server (Dash builds its UI once per process), users in every role, logged-in clients, and
options for headless Chromium on a closed network."""
from __future__ import annotations

import os
import re
import types

import pytest
from selenium.webdriver.chrome.options import Options as ChromeOptions

from app import migrate
from app.config import Config
from app.permissions import SYSTEM
from app.server import configure
from app.services import imports, projects, users
from app.wsgi import create_app, web_deps

PASSWORD = "correct-horse-1"
ROLES = ("owner", "reviewer", "annotator", "viewer")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(client, path: str = "/login") -> str:
    """The CSRF token of the form at `path` (GET it, as a browser does before posting)."""
    page = client.get(path)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no csrf_token in {path} ({page.status_code})"
    return match.group(1)


def post_login(client, username: str, password: str = PASSWORD, **kwargs):
    """POST the login form with its CSRF token; the response (302 on success)."""
    data = {"username": username, "password": password, "csrf_token": form_token(client)}
    return client.post("/login", data=data, **kwargs)


def pytest_setup_options():
    """dash_duo's Chrome options: headless Chromium as root, on a machine without internet."""
    options = ChromeOptions()
    for arg in ("--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(arg)
    return options


@pytest.fixture(autouse=True)
def _cheap_password_hash(monkeypatch):
    """scrypt is deliberately slow; tests hash with a cheap method unless they opt out."""
    monkeypatch.setattr(users, "HASH_METHOD", "pbkdf2:sha256:1000")


def fresh_postgres_database() -> str:
    """With CELLLOOP_TEST_POSTGRES set (a server URL, e.g. the scaleout tier's
    postgresql+psycopg://postgres@127.0.0.1:5432/postgres), a new empty database on that
    server for one test; else "" (SQLite in the test's data directory)."""
    server = os.environ.get("CELLLOOP_TEST_POSTGRES", "")
    if not server:
        return ""
    import secrets

    import psycopg
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(env="testing", secret_key="test-secret-key-0123456789",
                  data_dir=tmp_path / "data", database_url=fresh_postgres_database()
                  ).validated()


@pytest.fixture(scope="session")
def _process_server(tmp_path_factory):
    """The one Flask server with the Dash UI of this test process, built on first use.
    Background callbacks end after 45 s (browser tests wait up to 60 s for them): a child
    that hangs is ended before the test gives up on it."""
    base = Config(env="testing", secret_key="test-secret-key-0123456789",
                  data_dir=tmp_path_factory.mktemp("web") / "data",
                  background_deadline_s=45).validated()
    server = create_app(base)
    yield server
    server.extensions["dash_app"]._background_manager.server.stop()


@pytest.fixture
def serve(_process_server):
    """serve(config) -> the process's server, now serving a new `Deps` built from `config`
    (its database, blob store, secret key, cookie flags and proxy count)."""
    made = []

    def _serve(config: Config):
        deps = web_deps(config)
        made.append(deps)
        return configure(_process_server, deps)
    yield _serve
    for deps in made:
        deps.db.dispose()


@pytest.fixture
def server(config, serve):
    migrate.upgrade(config)
    return serve(config)


@pytest.fixture
def dash_app(server):
    return server.extensions["dash_app"]


@pytest.fixture
def patch_jobs(monkeypatch, dash_app):
    """patch_jobs(module, name, value): monkeypatch.setattr in this process and in every
    background callback's process, which a job server forks and which never sees this
    process's patches (pages._background)."""
    manager = dash_app._background_manager

    def patch(module, name, value):
        assert isinstance(module, types.ModuleType), "patch a module's attribute"
        monkeypatch.setattr(module, name, value)
        monkeypatch.setattr(manager, "job_patches",
                            [*manager.job_patches, (module.__name__, name, value)])
    return patch


@pytest.fixture
def db(server):
    return server.extensions["cellloop"].db


@pytest.fixture
def session(db):
    s = db.session()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def world(db):
    """An admin, an outsider, and a project 'Lab' with one user per role.

    Returns a dict: {"project_id": int, "admin": id, "outsider": id, "owner": id, ...}."""
    ids = {}
    with db.session_scope() as s:
        ids["admin"] = users.create_user(s, SYSTEM, "admin", PASSWORD, is_admin=True).id
        ids["outsider"] = users.create_user(s, SYSTEM, "outsider", PASSWORD).id
        for role in ROLES:
            ids[role] = users.create_user(s, SYSTEM, role, PASSWORD).id
        pid = projects.create_project(s, SYSTEM, "Lab", "test project",
                                      owner_id=ids["owner"], starting_model="none").id
        for role in ROLES[1:]:
            projects.set_member(s, SYSTEM, pid, role, role)
    ids["project_id"] = pid
    return ids


@pytest.fixture
def login(server):
    """login("viewer") -> a Flask test client with that user's session."""
    def _login(username: str, password: str = PASSWORD):
        client = server.test_client()
        response = post_login(client, username, password)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client
    return _login


def actor(session, username: str):
    return users.find_user(session, username)


@pytest.fixture
def image_id(db, world, config):
    """One 80x60 16-bit image of discs, imported into 'Lab' by its owner; its id."""
    from sqlalchemy import select

    from app.services import imports
    from app.tables import Image
    from storage.blobstore import LocalBlobStore
    from tests.images_data import nuclei, tiff

    pixels, _ = nuclei((60, 80))
    with db.session_scope() as s:
        imports.import_files(s, users.find_user(s, "owner"), LocalBlobStore(config.blob_dir),
                            world["project_id"], [imports.ImportFile("a.tif", read=lambda: tiff(pixels))],
                            1 << 28)
    with db.session_scope() as s:
        return s.scalar(select(Image.id).where(Image.name == "a.tif"))


@pytest.fixture
def as_user(server):
    """`with as_user("viewer"):` runs a page callback inside a request of that user."""
    import contextlib

    from flask_login import login_user

    from app.context import get_session

    @contextlib.contextmanager
    def _as(username):
        with server.test_request_context("/_dash-update-component", method="POST"):
            login_user(users.find_user(get_session(), username))
            yield
    return _as


def component_text(component) -> str:
    """A Dash component (or plain value) as JSON text, to look for words in what it shows."""
    import json
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json")
                      else component, default=lambda o: o.to_plotly_json())


TINY_TRAINING = {"width": 8, "depth": 2, "patch": 64, "batch": 4, "steps_per_epoch": 20,
                 "epochs": 12, "patience": 20}


@pytest.fixture
def store(config):
    """The test's blob store (the data directory's blobs folder)."""
    from storage.blobstore import LocalBlobStore
    return LocalBlobStore(config.blob_dir)


@pytest.fixture
def three_images(session, store, world):
    """Three small nuclei images imported by the owner; their ids, oldest first."""
    from sqlalchemy import select

    from app.services.imports import ImportFile
    from app.tables import Image
    from tests.images_data import nuclei, tiff
    items = []
    for seed in range(3):
        pixels, _ = nuclei((60, 80), seed=seed)
        items.append(ImportFile(f"img{seed}.tif", read=lambda p=pixels: tiff(p)))
    imports.import_files(session, actor(session, "owner"), store, world["project_id"], items,
                         1 << 28)
    session.commit()
    return session.scalars(select(Image.id).order_by(Image.id)).all()


@pytest.fixture
def lab(db, world, store):
    """The project with 5 annotated disc images and 1 unannotated, and tiny training
    settings; the blob store."""
    from tests.images_data import nuclei, tiff
    items = []
    for k in range(6):
        img, labels = nuclei(shape=(96, 96), n=8, seed=k)
        items.append(imports.ImportFile(
            f"d{k}.tif", read=lambda img=img: tiff(img),
            read_labels=(lambda labels=labels: tiff(labels)) if k < 5 else None))
    with db.session_scope() as s:
        imports.import_files(s, SYSTEM, store, world["project_id"], items, 1 << 28)
        projects.set_training_settings(s, SYSTEM, world["project_id"], TINY_TRAINING)
    return store


def pytest_sessionfinish(session, exitstatus):
    """Python joins every non-daemonic child process at exit, so one child left hanging
    (a process a test started with multiprocessing) would keep the run from ever ending.
    End any that are left, and say so: that is a defect to look into. (Background callbacks
    are children of the job server, which the `_process_server` fixture stops: it kills
    the jobs still running.)"""
    import multiprocessing
    import sys
    try:
        import multiprocess
    except ImportError:
        multiprocess = None
    import os

    import psutil
    for module in filter(None, (multiprocessing, multiprocess)):
        for child in module.active_children():
            # Dash may already have reaped it (psutil's wait), so multiprocess still counts it
            # as alive: only a process that is still this one's child is ended
            try:
                ours = psutil.Process(child.pid).ppid() == os.getpid()
            except psutil.Error:
                ours = False
            if not ours:
                continue
            print(f"\nconftest: ended child process {child.pid} ({child.name}) left running "
                  "at the end of the test run", file=sys.stderr)
            child.kill()
            child.join(timeout=10)
