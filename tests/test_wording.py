"""Numbers in messages read as English: "1 cell", "2 cells"."""
from app.wording import plural


def test_one_is_singular_everything_else_plural():
    assert [plural(n, "cell") for n in (0, 1, 2, 11)] == ["0 cells", "1 cell", "2 cells",
                                                          "11 cells"]
    assert plural(1, "class", "classes") == "1 class"
    assert plural(3, "class", "classes") == "3 classes"
