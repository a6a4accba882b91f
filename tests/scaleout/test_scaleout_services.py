"""The services under real concurrency on PostgreSQL (the stack's server, a fresh database per
test through tests/conftest.py's CELLLOOP_TEST_POSTGRES): threads on their own connections,
released together by a barrier. Leases: eight annotators asking for the next image at once
get eight different images. Drafts: two first edits at once make one draft (the lease's
UPDATE locks the image row first, so they go one after the other; `drafts.ensure_draft` also
survives a lost insert race). Jobs: four trainings submitted at once queue one."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.jobs.rows import create_job_row
from app.permissions import SYSTEM
from app.services import drafts, leases, projects, users
from app.tables import Draft, Job
from tests.conftest import PASSWORD
from tests.images_data import rect

pytestmark = [pytest.mark.scaleout]


@pytest.fixture(autouse=True)
def _on_postgres(stack, monkeypatch):
    server = stack["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    monkeypatch.setenv("CELLLOOP_TEST_POSTGRES", server)


def together(n: int, fn) -> list:
    """Run fn(i) in n threads released at once; their results (or exceptions)."""
    barrier, out = threading.Barrier(n), [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_eight_annotators_at_once_get_eight_images(db, config, world, three_images):
    assert db.engine.dialect.name == "postgresql"
    with db.session_scope() as s:
        for k in range(8):
            users.create_user(s, SYSTEM, f"a{k}", PASSWORD)
            projects.set_member(s, SYSTEM, world["project_id"], f"a{k}", "annotator")
    more = three_images                       # 3 images: 3 leases, 5 refusals
    assert len(more) == 3

    def take(i):
        with db.session_scope() as s:
            return leases.next_image(s, users.find_user(s, f"a{i}"), config,
                                     world["project_id"])
    got = together(8, take)
    images = [g for g in got if isinstance(g, int)]
    assert sorted(images) == sorted(more), got          # each image once, none twice
    assert all(not isinstance(g, int) and "No images" in str(g)
               for g in got if not isinstance(g, int)), got


def test_two_first_edits_at_once_make_one_draft(db, config, world, three_images, store):
    image_id = three_images[0]

    def edit(i):
        with db.session_scope() as s:
            return drafts.record_edit(s, users.find_user(s, "annotator"), config, store,
                                      image_id, {"op": "add", "shape": rect(5 + 20 * i, 5,
                                                                            15 + 20 * i, 15)})
    got = together(2, edit)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Draft)) == 1
    # one edit may be refused as "at the same moment" (the draft's revision), never a 500
    errors = [g for g in got if isinstance(g, Exception)]
    assert all("same moment" in str(e) for e in errors), errors


def test_two_trainings_at_once_queue_one(db, world):
    def submit(i):
        with db.session_scope() as s:
            return create_job_row(s, world["project_id"], world["owner"], "train", {})
    got = together(4, submit)
    assert sum(1 for g in got if g[1]) == 1, got
    assert len({g[0] for g in got}) == 1, got
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
