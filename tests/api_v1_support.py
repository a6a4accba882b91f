"""Helpers of the /api/v1 tests: tokens per user and a client that sends them."""
from __future__ import annotations

from app.permissions import SYSTEM
from app.services import tokens


def issue(db, username: str, write: bool = True, name: str = "test", **kwargs) -> str:
    """A new API token of `username` (read-write unless told)."""
    with db.session_scope() as s:
        return tokens.create_token_for(s, SYSTEM, username, name, write=write, **kwargs).token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
