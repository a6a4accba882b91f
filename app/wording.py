"""Words for numbers in messages: "1 cell", "2 cells" (no dependency: pages, services and
the CLI share it)."""
from __future__ import annotations


def plural(n, word: str, many: str | None = None) -> str:
    """`n` and `word`, in the plural unless n is 1 (`many`: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
