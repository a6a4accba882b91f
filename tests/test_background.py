"""Background callbacks run in another process; they act for the user whose live login
session sent the request, and only when the page's signed token names that same user:
forged, expired, outdated or borrowed tokens are refused, and a logout ends them."""
import pytest

from app.background import actor_from_token, run_as, sign_actor
from app.errors import PermissionDenied
from app.services import projects, users
from tests.conftest import actor, form_token


def test_tokens_name_the_user_and_expire(server, session, world):
    secret = server.secret_key
    token = sign_actor(secret, actor(session, "annotator"))
    assert actor_from_token(session, secret, token).username == "annotator"
    with pytest.raises(PermissionDenied):
        actor_from_token(session, "another-secret-key-123456", token)
    with pytest.raises(PermissionDenied):
        actor_from_token(session, secret, token + "x")
    with pytest.raises(PermissionDenied):
        actor_from_token(session, secret, token, max_age=-1)
    user = actor(session, "annotator")
    user.auth_version += 1                       # password changed: old pages stop working
    session.flush()
    with pytest.raises(PermissionDenied, match="session has ended"):
        actor_from_token(session, secret, token)


def cookies_of(server, client) -> dict:
    """The cookies a browser sends with a callback request, as Dash hands them over."""
    cookie = client.get_cookie(server.config.get("SESSION_COOKIE_NAME") or "session")
    return {cookie.key: cookie.value}


def test_run_as_calls_services_with_the_users_rights(server, db, world, login):
    viewer, owner = login("viewer"), login("owner")
    with db.session_scope() as s:
        viewer_token = sign_actor(server.secret_key, actor(s, "viewer"))
        owner_token = sign_actor(server.secret_key, actor(s, "owner"))
    as_viewer, as_owner = cookies_of(server, viewer), cookies_of(server, owner)
    project, error = run_as(server, viewer_token, as_viewer, projects.get_project,
                            world["project_id"])
    assert error is None and project.role == "viewer"
    _, error = run_as(server, viewer_token, as_viewer, projects.set_annotation_mode,
                      world["project_id"], "points")
    assert "needs owner" in error
    mode, error = run_as(server, owner_token, as_owner, projects.set_annotation_mode,
                         world["project_id"], "points")
    assert error is None and mode == "points"
    _, error = run_as(server, "forged", as_viewer, users.list_users)
    assert error == "Not signed in."


def test_a_borrowed_token_or_a_logged_out_session_is_refused(server, db, world, login):
    """The probe: a non-member sent the owner's token from their own session and got the
    owner's result; the token also outlived the owner's logout."""
    owner, outsider = login("owner"), login("outsider")
    with db.session_scope() as s:
        owner_token = sign_actor(server.secret_key, actor(s, "owner"))
    _, error = run_as(server, owner_token, cookies_of(server, outsider), projects.get_project,
                      world["project_id"])
    assert error == "This page belongs to another login; reload it."
    _, error = run_as(server, owner_token, {}, projects.get_project, world["project_id"])
    assert error == "Not signed in."
    as_owner = cookies_of(server, owner)
    assert run_as(server, owner_token, as_owner, projects.get_project,
                  world["project_id"])[1] is None
    owner.post("/logout", data={"csrf_token": form_token(owner, "/logout")})
    _, error = run_as(server, owner_token, as_owner, projects.get_project, world["project_id"])
    assert error == "Your session has ended; log in again."


def test_a_child_forked_while_a_thread_writes_a_log_line_can_still_log(tmp_path):
    """The flake of test_a_suggestion_shown_without_scores_is_scored_afterwards: a background
    callback forked while another thread of the worker was inside a log write inherits that
    stream's lock as held, and its own first log line waited for ever. A writer blocked on a
    full pipe holds the lock here; the child, after `_fork_safe_logging`, logs and exits."""
    import logging
    import os
    import threading
    import time

    from app import background
    read_end, write_end = os.pipe()
    stream = open(write_end, "w")                                   # buffered, as log files are
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("cellloop-fork-test")
    logger.addHandler(handler)
    logger.propagate = False
    writer = threading.Thread(target=lambda: (stream.write("x" * (1 << 20)), stream.flush()),
                              daemon=True)
    writer.start()                       # blocks in the write: the pipe holds 64 KiB
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:                         # the child: what run_as does first, then a log line
        try:
            background._fork_safe_logging()
            logger.warning("child logged")
            handler.flush()
        finally:
            os._exit(0)
    drained = []
    drain = threading.Thread(target=lambda: drained.append(
        b"".join(iter(lambda: os.read(read_end, 1 << 16), b""))), daemon=True)
    drain.start()
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the log stream's lock")
    writer.join(10)
    logger.removeHandler(handler)
    stream.close()
    drain.join(10)
    assert status == 0 and b"child logged" in drained[0]
