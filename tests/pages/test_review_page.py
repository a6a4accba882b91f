"""The Review page per role (issue 19, item 1): reviewers get Review links into the
workspace, annotators their returned list and the viewer for others' work, viewers only look."""

import pytest

from app.services import annotations, drafts
from tests.conftest import actor
from tests.conftest import component_text as text
from tests.images_data import rect


@pytest.fixture
def reviewed(session, config, store, world, three_images):  # noqa: F811
    """a: waiting for review; b: sent back to the annotator with a comment."""
    a, b, _c = three_images
    anna = actor(session, "annotator")
    for image_id in (a, b):
        drafts.record_edit(session, anna, config, store, image_id,
                           {"op": "add", "shape": rect(2, 2, 9, 9)})
        annotations.save(session, anna, config, store, image_id)
    annotations.review(session, actor(session, "reviewer"), b, accept=False,
                       comment="outline the dim cell too")
    session.commit()
    return a, b


def test_review_page_per_role(as_user, world, reviewed):
    from pages import review as page
    a, b = reviewed
    pid = str(world["project_id"])
    with as_user("reviewer"):
        out = text(page.layout(project_id=pid))
        assert "Waiting for review (1)" in out and f'"href": "/annotate/{a}?from=review"' in out
        assert '"children": "Review"' in out and '"id": "review-next"' in out
        assert "outline the dim cell too" in out and f'"href": "/annotate/{b}"' not in out
    with as_user("annotator"):
        out = text(page.layout(project_id=pid))
        assert "Returned to me (1)" in out and f'"href": "/annotate/{b}"' in out
        assert '"id": "review-annotate-returned"' in out
        assert f'"href": "/annotate/{a}"' not in out and f'"href": "/images/{a}"' in out
        assert '"id": "review-next"' not in out
    with as_user("viewer"):
        out = text(page.layout(project_id=pid))
        assert "review-returned-to-me" not in out and "/annotate/" not in out
    with as_user("outsider"):
        assert "not a member" in text(page.layout(project_id=pid))


def test_project_page_shows_returned_to_me_and_the_waiting_count(as_user, world, reviewed):
    from pages import project as page
    pid = str(world["project_id"])
    with as_user("annotator"):
        out = text(page.layout(project_id=pid))
        assert "Returned to me (1)" in out and "outline the dim cell too" in out
    with as_user("reviewer"):
        out = text(page.layout(project_id=pid))
        assert "Review (1 waiting)" in out and "Returned to me" not in out


def test_review_lists_say_points_for_a_counting_image():
    """A points annotation (no outlines) reads "2 points" in the review lists, not "0"."""
    import datetime as dt
    from app.services.annotations import ReviewItem
    from pages import review
    from tests.conftest import component_text
    item = ReviewItem(7, "smear.tif", 1, "anna", dt.datetime(2026, 11, 30), 0, "submitted",
                      n_points=2)
    waiting = component_text(review.waiting_table([item], "t", True, "rita"))
    assert "2 points" in waiting and "Marked" in waiting
    outlined = ReviewItem(8, "nuclei.tif", 1, "anna", dt.datetime(2026, 11, 30), 1, "accepted")
    assert "1 cell" in component_text(review.accepted_table([outlined], "t"))
