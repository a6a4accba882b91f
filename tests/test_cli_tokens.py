"""`python -m app create-token`: prints the token once (stdout: the token alone, so
`TOKEN=$(python -m app create-token ...)` works); only its hash is stored."""
import io
import sys

import pytest
from sqlalchemy import select

from app import cli
from app.db import Database
from app.services import tokens
from app.tables import ApiToken


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CELLLOOP_ENV", "development")
    return tmp_path / "data"


def test_create_token_prints_it_once(env, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("ann-password\n"))
    assert cli.main(["init-db"]) == 0
    assert cli.main(["create-user", "ann"]) == 0
    capsys.readouterr()
    assert cli.main(["create-token", "ann", "--name", "microscope", "--write",
                     "--expires-days", "30"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("cl_") and "\n" not in token
    assert "microscope" in err and "write" in err and "shown once" in err
    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        row = s.scalar(select(ApiToken))
        assert (row.name, row.scope) == ("microscope", "write") and row.expires_at is not None
        assert row.token_hash == tokens.hash_token(token)
    db.dispose()
    assert cli.main(["create-token", "nobody", "--name", "x"]) == 2
    assert "No user 'nobody'" in capsys.readouterr().err
    assert cli.main(["create-token", "ann", "--name", "r"]) == 0
    assert capsys.readouterr().err.count("(read") == 1
