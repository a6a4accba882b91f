"""Versions are what was saved, once: a save that changes nothing makes no version (also
when six arrive at once), a reviewer does not accept their own version unless the project
allows it, and excluding then including an image keeps its review status."""
import threading

import pytest
from sqlalchemy import func, select

from app.errors import PermissionDenied
from app.services import annotations, drafts, gallery, projects
from app.tables import Annotation, Image
from storage.blobstore import get_array
from tests.conftest import actor
from tests.images_data import rect


def n_versions(session, image_id) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Annotation)
                          .where(Annotation.image_id == image_id))


def draw_and_save(session, config, store, who, image_id, box):  # noqa: F811
    user = actor(session, who)
    drafts.record_edit(session, user, config, store, image_id, {"op": "add", "shape": rect(*box)})
    version = annotations.save(session, user, config, store, image_id)
    session.commit()
    return version


def test_a_save_that_changes_nothing_makes_no_version(session, config, store, world,  # noqa: F811
                                                      three_images):
    image_id = three_images[0]
    first = draw_and_save(session, config, store, "annotator", image_id, (5, 5, 20, 20))
    anna = actor(session, "annotator")
    again = annotations.save(session, anna, config, store, image_id)       # "Save & next"
    session.commit()
    assert again.version == first.version and n_versions(session, image_id) == 1
    drafts.record_edit(session, anna, config, store, image_id, {"op": "add", "shape": rect(30, 30, 45, 45)})
    drafts.undo(session, anna, config, store, image_id, False)      # back to what was saved
    assert annotations.save(session, anna, config, store, image_id).version == first.version
    session.commit()
    assert n_versions(session, image_id) == 1


def test_six_simultaneous_saves_make_one_version(db, config, store, world,  # noqa: F811
                                                 three_images):
    image_id = three_images[1]
    with db.session_scope() as s:
        drafts.record_edit(s, actor(s, "annotator"), config, store, image_id,
                           {"op": "add", "shape": rect(5, 5, 25, 25)})
    barrier, outcomes = threading.Barrier(6), []

    def save():
        barrier.wait()
        try:
            with db.session_scope() as s:
                outcomes.append(annotations.save(s, actor(s, "annotator"), config, store,
                                                 image_id).version)
        except Exception as exc:  # noqa: BLE001 - a refused concurrent save is fine, a copy is not
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.session_scope() as s:
        assert n_versions(s, image_id) == 1, outcomes
    assert 1 in outcomes


def test_self_review_is_a_project_setting_off_by_default(session, config, store, world,  # noqa: F811
                                                         three_images):
    image_id = three_images[2]
    draw_and_save(session, config, store, "reviewer", image_id, (5, 5, 20, 20))
    rita = actor(session, "reviewer")
    with pytest.raises(PermissionDenied, match="saved this version yourself"):
        annotations.review(session, rita, image_id, accept=True)
    with pytest.raises(PermissionDenied):
        projects.set_self_review(session, rita, world["project_id"], True)
    projects.set_self_review(session, actor(session, "owner"), world["project_id"], True)
    assert annotations.review(session, rita, image_id, accept=True).review_state == "accepted"


def test_exclude_then_include_keeps_the_review_status(session, config, store, world,  # noqa: F811
                                                      three_images):
    image_id = three_images[0]
    draw_and_save(session, config, store, "annotator", image_id, (5, 5, 20, 20))
    annotations.review(session, actor(session, "reviewer"), image_id, accept=True)
    assert session.get(Image, image_id).status == "reviewed"
    owner = actor(session, "owner")
    gallery.set_excluded(session, owner, image_id, True, "blurry")
    assert session.get(Image, image_id).status == "excluded"
    gallery.set_excluded(session, owner, image_id, False)
    assert session.get(Image, image_id).status == "reviewed"
    returned = three_images[1]
    draw_and_save(session, config, store, "annotator", returned, (5, 5, 20, 20))
    annotations.review(session, actor(session, "reviewer"), returned, accept=False,
                       comment="missed one")
    gallery.set_excluded(session, owner, returned, True)
    gallery.set_excluded(session, owner, returned, False)
    assert session.get(Image, returned).status == "in_progress"


def test_unchanged_saves_over_old_blobs_and_gapped_masks_make_no_version(  # noqa: F811
        session, config, store, world, three_images):
    """Blob keys differ for equal content (an older release's plain .npy blob; an imported
    mask numbered with gaps that saving renumbers 1..N): content decides, not keys."""
    import numpy as np

    from app.services import imports
    image_id = three_images[0]
    gapped = np.zeros((60, 80), np.uint16)
    gapped[5:15, 5:15], gapped[20:30, 20:30], gapped[40:50, 40:60] = 3, 9, 27
    imports.add_imported_annotation(session, actor(session, "owner"), store,
                                          session.get(Image, image_id), gapped)
    session.commit()
    status = session.get(Image, image_id).status
    anna = actor(session, "annotator")
    version = annotations.save(session, anna, config, store, image_id)
    session.commit()
    assert version.version == 1 and n_versions(session, image_id) == 1
    assert session.get(Image, image_id).status == status

    other = three_images[1]
    draw_and_save(session, config, store, "annotator", other, (5, 5, 20, 20))
    newest = session.scalars(select(Annotation).where(Annotation.image_id == other)).one()
    # the same labels stored as releases before zstd blobs stored them: another key
    old_key = store.put_bytes(_to_npy(get_array(store, newest.label_blob_key)))
    assert old_key != newest.label_blob_key
    newest.label_blob_key = old_key
    session.commit()
    annotations.save(session, anna, config, store, other)
    session.commit()
    assert n_versions(session, other) == 1


def _to_npy(array) -> bytes:
    import io as _io

    import numpy as np
    buf = _io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_a_returned_version_saved_unchanged_goes_back_to_review(  # noqa: F811
        session, config, store, world, three_images):
    image_id = three_images[2]
    draw_and_save(session, config, store, "annotator", image_id, (5, 5, 20, 20))
    annotations.review(session, actor(session, "reviewer"), image_id, accept=False,
                       comment="check the edge")
    session.commit()
    again = annotations.save(session, actor(session, "annotator"), config, store, image_id)
    session.commit()
    assert n_versions(session, image_id) == 1 and again.review_state == "submitted"
    assert session.get(Image, image_id).status == "annotated"
