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
                 for p in python_files("models", "storage")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_pages_import_dash():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("app", "models", "storage")
                 if "dash" in imports_of(p)]
    assert offenders == []


def test_services_do_not_import_flask_or_pages():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("app/services", "app/jobs")
                 if imports_of(p) & {"flask", "dash", "pages", "flask_login"}]
    assert offenders == []


def test_pages_do_not_touch_sql_or_torch():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("pages")
                 if imports_of(p) & {"sqlalchemy", "torch", "models", "storage"}]
    assert offenders == []


def test_imaging_is_pure_arrays():
    """app/imaging (shapes <-> masks, display rendering) takes and returns arrays: no
    database, no blob store, no torch, nothing else of the app."""
    offenders = {str(p.relative_to(ROOT)): sorted(imports_of(p) & {"sqlalchemy", "storage", "models", "torch", "flask"})
                 for p in python_files("app/imaging")}
    assert {k: v for k, v in offenders.items() if v} == {}
    graph = import_graph()
    assert sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("app.imaging")
                  for d in deps if not d.startswith("app.imaging")) == []


# ---- the import graph: no circles, no upward arrows -------------------------------------

LAYERS = ("storage", "models", "app", "pages")   # bottom to top: a module imports only below
COMPOSITION_ROOTS = {"app.wsgi"}                  # builds Flask, Dash and Celery: imports all


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: modules of this project it imports}, imports inside functions included; a
    name imported from a package resolves to its submodule when there is one."""
    paths = {_module_name(p): p for p in python_files(*LAYERS)}

    def resolve(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(resolve(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:
                    deps.add(resolve(f"{base}.{alias.name}") or resolve(base))
        deps.discard(None)
        deps.discard(module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circles():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_layer_above_it():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = sorted(f"{m} -> {d}" for m, deps in import_graph().items()
                    if m not in COMPOSITION_ROOTS for d in deps
                    if rank[d.split(".")[0]] > rank[m.split(".")[0]])
    assert upward == []


def test_the_checks_see_a_circle_and_an_upward_arrow():
    """The graph checks themselves can fail."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "app.services.queries" in graph["app.services.annotations"]
    assert "storage.writers" in graph


JOB_LAYER = ("app.jobs.kinds", "app.jobs.rows", "app.jobs.celery_app", "app.jobs.builtin",
             "app.jobs.reaper")          # job rows and queues: below the services
WORKER_SIDE = ("app.jobs.handlers", "app.jobs.runner", "app.jobs.tasks")   # above them


def test_job_rows_sit_below_the_services_and_handlers_above():
    graph = import_graph()
    down = sorted(f"{m} -> {d}" for m in JOB_LAYER for d in graph[m]
                  if d.startswith("app.services") or d in WORKER_SIDE)
    up = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("app.services")
                for d in deps if d in WORKER_SIDE)
    assert (down, up) == ([], [])
    assert "app.services.training" in graph["app.jobs.handlers"]


def test_only_the_composition_root_imports_pages():
    importers = sorted(m for m, deps in import_graph().items() if not m.startswith("pages")
                       and any(d.split(".")[0] == "pages" for d in deps))
    assert importers == ["app.wsgi"]


WEB_PACKAGES = ("flask", "flask_login", "flask_bootstrap", "dash", "dash_bootstrap_components",
                "plotly", "werkzeug.serving", "gunicorn")
BLOCK_WEB = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {[p.split('.')[0] for p in WEB_PACKAGES if '.' not in p]!r}:
            raise ImportError('web package imported by the worker: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_a_gpu_worker_runs_without_the_web_packages(tmp_path):
    """A GPU host runs `python -m app worker --queues gpu` with the model code and the job
    system only: the CLI's start, its logging, the Celery app, the task and every job
    handler import no web package (a GPU image without Flask failed at `init-db` on
    app.logging_setup's `import flask`)."""
    import subprocess
    import sys
    code = BLOCK_WEB + """
from app.cli import build_parser
from app.logging_setup import configure_logging
configure_logging('INFO')
import app.jobs.celery_app, app.jobs.tasks, app.jobs.handlers, app.jobs.reaper, app.migrate
import celery.bin.celery, celery.bin.worker, kombu.transport.sqlalchemy
from app.cli import main
sys.exit(main(['init-db']))
"""
    env = {"PATH": "/usr/bin:/bin", "CELLLOOP_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "data").is_dir()
