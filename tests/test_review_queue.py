"""The review queue and the "returned to me" list (issue 19, item 1): what waits for a
reviewer, what was sent back to whom with which comment, and that Annotate hands an
annotator their returned images before anything else, even an image they still hold."""
import pytest

from app.errors import NotFound, ValidationError
from app.services import annotations, drafts, gallery, leases
from tests.conftest import actor
from tests.images_data import rect


def draw_and_save(session, config, store, who, image_id, box=(2, 2, 9, 9)):  # noqa: F811
    user = actor(session, who)
    leases.release(session, user, image_id)
    drafts.record_edit(session, user, config, store, image_id, {"op": "add", "shape": rect(*box)})
    version = annotations.save(session, user, config, store, image_id)
    leases.release(session, user, image_id)
    session.commit()
    return version


def send_back(session, image_id, comment):
    annotations.review(session, actor(session, "reviewer"), image_id, accept=False,
                       comment=comment)
    session.commit()


def test_review_queue_lists_what_waits_and_what_was_returned(session, config, store, world,
                                                             three_images):
    pid = world["project_id"]
    a, b, c = three_images
    for image_id in (a, b, c):
        draw_and_save(session, config, store, "annotator", image_id)
    reviewer, anna, owner = (actor(session, n) for n in ("reviewer", "annotator", "owner"))
    waiting = annotations.review_list(session, reviewer, pid, "submitted")
    assert [i.image_id for i in waiting] == [a, b, c]          # first come, first reviewed
    assert waiting[0].author == "annotator" and waiting[0].n_cells == 1

    annotations.review(session, reviewer, a, accept=True)
    send_back(session, b, "the cell at the top is missing")
    assert [i.image_id for i in annotations.review_list(session, reviewer, pid)] == [c]
    returned = annotations.review_list(session, owner, pid, "returned")
    assert [(i.image_id, i.review_comment, i.reviewer) for i in returned] == [
        (b, "the cell at the top is missing", "reviewer")]
    assert [i.image_id for i in annotations.review_list(session, owner, pid, "accepted")] == [a]

    mine = annotations.returned_to_me(session, anna, pid)
    assert [(i.image_id, i.review_comment, i.reviewer) for i in mine] == [
        (b, "the cell at the top is missing", "reviewer")]
    assert annotations.returned_to_me(session, reviewer, pid) == []
    assert annotations.review_counts(session, anna, pid) == {"submitted": 1, "returned_to_me": 1}

    # a new save of the returned image takes it off the list and back into the queue
    draw_and_save(session, config, store, "annotator", b, (20, 20, 30, 30))
    assert annotations.returned_to_me(session, anna, pid) == []
    assert [i.image_id for i in annotations.review_list(session, reviewer, pid)] == [c, b]


def test_review_lists_check_membership_and_state(session, world, three_images):
    with pytest.raises(NotFound):
        annotations.review_list(session, actor(session, "outsider"), world["project_id"])
    with pytest.raises(NotFound):
        annotations.returned_to_me(session, actor(session, "outsider"), world["project_id"])
    with pytest.raises(ValidationError):
        annotations.review_list(session, actor(session, "viewer"), world["project_id"], "gone")


def test_deleted_and_excluded_images_leave_the_review_lists(session, config, store, world,
                                                            three_images):
    pid, (a, b, _c) = world["project_id"], three_images
    for image_id in (a, b):
        draw_and_save(session, config, store, "annotator", image_id)
        send_back(session, image_id, "redo")
    owner = actor(session, "owner")
    gallery.set_excluded(session, owner, a, True, "out of focus")
    gallery.delete_images(session, owner, pid, [b])
    session.commit()
    assert annotations.returned_to_me(session, actor(session, "annotator"), pid) == []
    assert annotations.review_list(session, owner, pid, "returned") == []


def test_annotate_serves_returned_images_first_even_over_a_held_image(session, config, store,
                                                                      world, three_images):
    pid, anna = world["project_id"], actor(session, "annotator")
    a, b, c = three_images
    draw_and_save(session, config, store, "annotator", b)
    draw_and_save(session, config, store, "annotator", c)
    # the annotator opens a fresh image and walks away: it stays leased to them
    assert leases.next_image(session, anna, config, pid) == a
    send_back(session, c, "split the clump")
    send_back(session, b, "missed one")
    session.commit()
    # both returned images (oldest saved first) come before the image they hold
    assert leases.candidates(session, anna, pid)[:3] == [b, c, a]
    assert leases.peek_next(session, anna, pid) == b
    assert leases.next_image(session, anna, config, pid) == b


def test_reviewing_in_the_workspace_leaves_no_lease_behind(session, config, store, world,
                                                           three_images):
    from app.tables import Image
    a, b, _c = three_images
    draw_and_save(session, config, store, "annotator", a)
    draw_and_save(session, config, store, "annotator", b)
    reviewer = actor(session, "reviewer")
    for image_id, accept in ((a, True), (b, False)):
        # opening the image to review it leases it to the reviewer, as for any editor
        assert annotations.open_workspace(session, reviewer, config, image_id).can_review
        assert session.get(Image, image_id).assigned_to_id == reviewer.id
        annotations.review(session, reviewer, image_id, accept=accept, comment="redo")
        assert session.get(Image, image_id).assigned_to_id is None


def test_a_reviewers_next_goes_through_the_review_list_not_the_annotation_queue(
        session, config, store, world, three_images):
    """A new user's walk: after Accept, a reviewer's Next opened a fresh unannotated image
    and leased it away from the annotators for 30 minutes. From the review list, Next is the
    image after the current one in the waiting list (wrapping round, so Skip reaches every
    one), the reviewer's own versions left out unless they may accept them."""
    from app.errors import PermissionDenied
    from app.permissions import SYSTEM
    from app.services import projects
    pid = world["project_id"]
    a, b, c = three_images
    reviewer = actor(session, "reviewer")
    assert annotations.next_to_review(session, reviewer, pid, None) is None
    draw_and_save(session, config, store, "annotator", a)
    draw_and_save(session, config, store, "reviewer", b)            # the reviewer's own
    draw_and_save(session, config, store, "annotator", c)
    assert annotations.next_to_review(session, reviewer, pid, None) == a     # the oldest
    assert annotations.next_to_review(session, reviewer, pid, a) == c        # b is theirs
    assert annotations.next_to_review(session, reviewer, pid, c) == a        # wraps round
    projects.set_self_review(session, SYSTEM, pid, True)
    walked = [annotations.next_to_review(session, reviewer, pid, x) for x in (a, b, c)]
    assert walked == [b, c, a]                                  # every one, in order
    annotations.review(session, reviewer, a, accept=True)
    assert annotations.next_to_review(session, reviewer, pid, a) == b  # a left: the oldest
    assert annotations.next_to_review(session, reviewer, pid, b) == c
    annotations.review(session, reviewer, c, accept=True)
    assert annotations.next_to_review(session, reviewer, pid, b) is None     # only itself
    with pytest.raises(PermissionDenied):
        annotations.next_to_review(session, actor(session, "annotator"), pid, None)
