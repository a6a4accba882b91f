"""Words for numbers in messages: "1 cell", "2 cells" (no dependency: pages, services and
the CLI share it)."""
from __future__ import annotations


def plural(n, word: str, many: str | None = None) -> str:
    """`n` and `word`, in the plural unless n is 1 (`many`: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def cells_and_points(n_cells: int | None, n_points: int | None) -> str:
    """What an annotation marks: "26 cells", "6 points" (a counting image), or
    "3 cells, 6 points"."""
    n_cells, n_points = n_cells or 0, n_points or 0
    if n_points and n_cells:
        return f"{plural(n_cells, 'cell')}, {plural(n_points, 'point')}"
    return plural(n_points, "point") if n_points else plural(n_cells, "cell")
