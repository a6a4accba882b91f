"""The architecture's import rules, checked on the source."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(*folders):
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def test_domain_layer_never_imports_web_frameworks_or_the_app():
    offenders = {str(p.relative_to(ROOT)): sorted(imports_of(p) & {"dash", "flask", "app", "pages"})
                 for p in python_files("models", "storage", "imaging")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_pages_import_dash():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("app", "models", "storage", "imaging")
                 if "dash" in imports_of(p)]
    assert offenders == []


def test_services_do_not_import_flask_or_pages():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("app/services", "app/jobs")
                 if imports_of(p) & {"flask", "dash", "pages", "flask_login"}]
    assert offenders == []


def test_pages_do_not_touch_sql_or_torch():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("pages")
                 if imports_of(p) & {"sqlalchemy", "torch", "models", "storage", "imaging"}]
    assert offenders == []


def test_imaging_is_pure_arrays():
    """imaging/ (shapes <-> masks, display rendering) takes and returns arrays: no database,
    no blob store, no torch."""
    offenders = {str(p.relative_to(ROOT)): sorted(imports_of(p) & {"sqlalchemy", "storage", "models", "torch"})
                 for p in python_files("imaging")}
    assert {k: v for k, v in offenders.items() if v} == {}
