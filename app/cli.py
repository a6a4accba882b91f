"""Command line: `python -m app <command>`.

The CLI acts as the trusted system user and calls the same services as the web pages.
Errors print one clear line to stderr and exit with status 2. Passwords are read from
standard input or a prompt, never from the command line (it would end up in shell
history and the process list).
"""
from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from pathlib import Path

from sqlalchemy.exc import OperationalError

from app.config import Config, ConfigError
from app.errors import ServiceError
from app.wording import plural

log = logging.getLogger("cellloop.cli")


class CLIError(Exception):
    pass


def _db(config: Config):
    from app.db import Database
    return Database(config.sqlalchemy_url)


def _read_password(prompt: str = "Password: ") -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise CLIError("no password on standard input")
        return line
    first = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != first:
        raise CLIError("the two passwords differ")
    return first


# ----------------------------------------------------------------------- commands
def cmd_init_db(config: Config, _args) -> None:
    from app import migrate
    from app.jobs.celery_app import prepare_broker
    migrate.upgrade(config)
    prepare_broker(config)
    print(f"database ready: {config.sqlalchemy_url}")


def cmd_create_user(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import users
    password = _read_password()
    with _db(config).session_scope() as s:
        info = users.create_user(s, SYSTEM, args.username, password, is_admin=args.admin)
    print(f"created user {info.username}{' (site admin)' if info.is_admin else ''}")


def cmd_set_password(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import users
    password = _read_password("New password: ")
    with _db(config).session_scope() as s:
        user = users.find_user(s, args.username)
        if user is None:
            raise CLIError(f"no user called {args.username!r}")
        users.reset_password(s, SYSTEM, user.id, password)
    print(f"password of {args.username} changed")


def cmd_set_active(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import users
    with _db(config).session_scope() as s:
        user = users.find_user(s, args.username)
        if user is None:
            raise CLIError(f"no user called {args.username!r}")
        users.set_active(s, SYSTEM, user.id, args.command == "activate-user")
    print(f"{args.username}: {'active' if args.command == 'activate-user' else 'deactivated'}")


def cmd_list_users(config: Config, _args) -> None:
    from app.permissions import SYSTEM
    from app.services import users
    with _db(config).session_scope() as s:
        for u in users.list_users(s, SYSTEM):
            flags = ",".join(f for f, on in (("admin", u.is_admin), ("inactive", not u.is_active))
                             if on)
            print(f"{u.id}\t{u.username}\t{flags}")


def cmd_create_project(config: Config, args) -> None:
    from app.deps import open_store
    from app.permissions import SYSTEM
    from app.services import projects, starting_models, users
    from app.services.project_settings import LoopSettings
    with _db(config).session_scope() as s:
        owner = users.find_user(s, args.owner)
        if owner is None:
            raise CLIError(f"no user called {args.owner!r}")
        start = args.starting_model
        if start and start.startswith(starting_models.PROJECT_PREFIX):   # project:NAME or :ID
            start = starting_models.PROJECT_PREFIX + str(projects.find_project_id(
                s, start[len(starting_models.PROJECT_PREFIX):]))
        p = projects.create_project(s, SYSTEM, args.name, args.description,
                                    projects.parse_named_colours(args.channels),
                                    projects.parse_named_colours(args.classes),
                                    owner_id=owner.id, starting_model=start,
                                    store=open_store(config))
        if args.mode != "outlines":
            projects.set_annotation_mode(s, SYSTEM, p.id, args.mode)
    started = p.settings.get("starting_model", "none")
    loop = {**LoopSettings().as_dict(), **(p.settings.get("active_learning") or {})}
    queue = (", cells marked by points (counting)" if args.mode == "points" else
             f", the queue serves {'regions' if loop['unit'] == 'region' else 'whole images'}"
             f" ({loop['strategy']})")
    print(f"created project {p.name!r} (id {p.id}), owner {args.owner}, starting model "
          f"{started}{queue}")


def cmd_list_projects(config: Config, _args) -> None:
    from app.permissions import SYSTEM
    from app.services import projects
    with _db(config).session_scope() as s:
        for p in projects.list_projects(s, SYSTEM):
            print(f"{p.id}\t{p.name}\t{p.n_images} images\t{p.n_annotated} annotated")


def cmd_add_member(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import projects
    with _db(config).session_scope() as s:
        pid = projects.find_project_id(s, args.project)
        m = projects.set_member(s, SYSTEM, pid, args.username, args.role)
    print(f"{m.username} is {m.role} in project {args.project}")


def cmd_training_settings(config: Config, args) -> None:
    """Show a project's training settings; KEY=VALUE pairs change them first (owners'
    settings, checked against project_settings.TRAINING_LIMITS)."""
    from app.services import projects
    from app.services.project_settings import TRAINING_LIMITS
    changes = _pairs(args.changes, "pull=20", ", ".join(TRAINING_LIMITS))
    before, current, _points = _change_settings(config, args.project, projects.training_settings,
                                                projects.set_training_settings, changes)
    for key, value in current.items():
        print(f"{key:16s} {value:g}{'  (changed)' if value != before[key] else ''}")


def _pairs(pairs: list[str], example: str, keys: str) -> dict:
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"{pair!r}: write KEY=VALUE, e.g. {example} (keys: {keys})")
        changes[key.strip()] = value.strip()
    return changes


def _change_settings(config: Config, project: str, read, write, changes: dict):
    """(settings before, settings after, whether the project counts points): `write`
    applies `changes` (when any) as the system, in one transaction."""
    from app.permissions import SYSTEM
    from app.services import projects
    from app.services.counting import is_points_project
    from app.tables import Project
    with _db(config).session_scope() as s:
        pid = projects.find_project_id(s, project)
        before = read(s, SYSTEM, pid)
        if changes:
            write(s, SYSTEM, pid, changes)
        return before, read(s, SYSTEM, pid), is_points_project(s.get(Project, pid))


def cmd_counting_settings(config: Config, args) -> None:
    """Show how a points project's counting model is trained; KEY=VALUE pairs change it
    first (owners' settings: target, input_mapping, steps, sigma)."""
    from app.services import counting
    from app.services.project_settings import COUNTING_LIMITS
    changes = _pairs(args.changes, "input_mapping=nucleus-contrast-v1",
                     ", ".join(["target", "input_mapping", *COUNTING_LIMITS]))
    before, current, points = _change_settings(config, args.project, counting.counting_settings,
                                               counting.set_counting_settings, changes)
    for key, value in current.items():
        shown = "none" if value is None else f"{value:g}" if isinstance(value, float) else value
        print(f"{key:16s} {shown}{'  (changed)' if value != before[key] else ''}")
    if not points:
        print("(the project marks cells by outlines: these apply once it is set to points)")


def cmd_demo(config: Config, _args) -> None:
    from app import migrate
    from app.demo import load_demo
    from app.deps import open_store
    migrate.upgrade(config)
    store = open_store(config)
    db = _db(config)
    with db.session_scope() as s:
        out = load_demo(s, store, config)
    if out["ranking_job"] is not None:      # rank the queue here, before the server starts
        print(f"demo queue ranked {_run_here(db, config, out['ranking_job'])}")
    print(f"demo project ready (id {out['project_id']}, {out['imported']} new images)")
    print("demo accounts (username / password / role):")
    for username, password, is_admin, role in out["accounts"]:
        print(f"  {username:8s} {password:18s} {role}{' + site admin' if is_admin else ''}")


def _run_here(db, config: Config, job_id: int) -> str:
    """Run a queued job in this process (no worker needed); "(job N: state)"."""
    from app.jobs.runner import run_job
    return f"(job {job_id}: {run_job(db, config, job_id, worker='cli', send=lambda _id: None)})"


def cmd_import(config: Config, args) -> None:
    from tqdm import tqdm

    from app.permissions import SYSTEM
    from app.services import imports, learning_loop, projects
    from app.services.sources import iter_import_files, labelstudio_items
    from app.deps import open_store
    store = open_store(config)
    paths = [Path(p) for p in args.paths]
    if args.labelstudio:
        if len(paths) != 1 or not paths[0].is_dir():
            raise CLIError("with --labelstudio give exactly one folder of images")
        items = labelstudio_items(Path(args.labelstudio), paths[0], config.max_image_pixels,
                                  config.max_image_bytes)
    else:
        for option, folder in (("--masks", args.masks), ("--points", args.points)):
            if folder and not Path(folder).is_dir():
                raise CLIError(f"{option} {folder}: no such folder")
        items = iter_import_files(paths, Path(args.masks) if args.masks else None,
                                  config.max_image_pixels, max_image_bytes=config.max_image_bytes,
                                  max_archive_bytes=config.max_archive_bytes,
                                  points_dir=Path(args.points) if args.points else None)
    counts = {"imported": 0, "duplicate": 0, "rejected": 0}
    problems, unannotated = [], 0
    db = _db(config)
    with db.session_scope() as s, tqdm(unit="file", disable=args.quiet) as bar:
        pid = projects.find_project_id(s, args.project)

        def report(_i, result):
            nonlocal unannotated
            counts[result.status] += 1
            unannotated += result.new_unannotated
            if result.status == "rejected":
                problems.append(result.message)
            bar.update(1)
            bar.set_postfix(counts, refresh=False)

        imports.import_files(s, SYSTEM, store, pid, items, config.max_image_pixels,
                            progress=report, max_bytes=config.max_image_bytes)
        s.commit()
        # a strategy that needs no model ranks the new images now (learning_loop.after_import)
        ranking = learning_loop.after_import(s, pid, None, unannotated, lambda _id: None)
    for message in problems:
        print(f"rejected: {message}", file=sys.stderr)
    print(f"imported {counts['imported']}, duplicates {counts['duplicate']}, "
          f"rejected {counts['rejected']}")
    if ranking.get("scoring_job") is not None:
        print(f"ranked the queue {_run_here(db, config, ranking['scoring_job'])}")
    if counts["imported"] == 0 and counts["rejected"]:
        raise CLIError("nothing was imported")


def cmd_export(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import exports, projects
    from app.deps import open_store
    store = open_store(config)
    formats = exports.parse_formats(args.format)
    with _db(config).session_scope() as s:
        pid = projects.find_project_id(s, args.project)
        out = Path(args.out)
        if out.suffix == ".zip":
            summary = exports.export_zip(s, SYSTEM, store, pid, out, formats,
                                         accepted_only=args.accepted_only)
        else:
            summary = exports.export_project(s, SYSTEM, store, pid, out, formats,
                                             accepted_only=args.accepted_only)
    print(f"exported {summary.n_images} images ({summary.n_annotated} annotated) as "
          f"{', '.join(summary.formats)} to {summary.out_dir} ({len(summary.files)} files)")


def cmd_train(config: Config, args) -> None:
    """Train in this process, with a progress bar on stderr fed by the job's progress (the
    stage and steps done/total as its text; the time left is tqdm's linear estimate, which
    the training job's time-proportional progress makes the job's own estimate)."""
    from tqdm import tqdm

    from app.jobs.runner import run_job
    from app.permissions import SYSTEM
    from app.services import projects, training
    from app.tables import Job
    db = _db(config)
    with db.session_scope() as s:
        pid = projects.find_project_id(s, args.project)
        params = {"fine_tune": not args.scratch, "epochs": args.epochs,
                  "max_minutes": args.max_minutes, "seed": args.seed}
        info = training.start_training(s, SYSTEM, pid, params, enqueue=lambda _id: None)

    with tqdm(total=100, smoothing=0, mininterval=0.5, dynamic_ncols=True,
              bar_format="{percentage:3.0f}%|{bar:20}| {elapsed}<{remaining} {desc}") as bar:
        def show(fraction, message):
            delta = max(0.0, round(100 * fraction, 1) - bar.n)
            bar.set_description_str(message, refresh=not delta)
            if delta:
                bar.update(delta)

        # follow-up jobs are run here, below (no worker needed)
        state = run_job(db, config, info.id, worker="cli", listeners=[show],
                        send=lambda _id: None)
        if state == "done":
            bar.set_description_str("done", refresh=False)
            bar.update(100 - bar.n)
    with db.session_scope() as s:
        job = s.get(Job, info.id)
        if state != "done":
            raise CLIError(f"training {state}: {job.error or job.message}")
        result = job.result
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items()
                        if isinstance(v, float))
    print(f"model version {result['model_version_id']}: {metrics}")
    print(result.get("outcome") or result["reason"])
    if result.get("scoring_job"):        # a strategy without a model ranks the new model's queue
        print(f"ranked the queue {_run_here(db, config, result['scoring_job'])}")


def cmd_score(config: Config, args) -> None:
    """Rank a project's unannotated images with its strategy, in this process."""
    from app.jobs.runner import run_job
    from app.permissions import SYSTEM
    from app.services import projects, scoring
    from app.tables import Job
    db = _db(config)
    with db.session_scope() as s:
        pid = projects.find_project_id(s, args.project)
        info = scoring.start_scoring(s, SYSTEM, pid, enqueue=lambda _id: None)
    state = run_job(db, config, info.id, worker="cli",
                    listeners=[lambda f, m: print(f"[{100 * f:5.1f}%] {m}", flush=True)])
    with db.session_scope() as s:
        job = s.get(Job, info.id)
        if state != "done":
            raise CLIError(f"scoring {state}: {job.error or job.message}")
        print(f"scored {job.result['n_images']} images with {job.result['strategy']}")


def cmd_simulate(config: Config, args) -> None:
    """Active-learning simulation on a project or a folder with images/ and labels/."""
    from app.services import simulation
    plan = simulation.parse_plan(args.strategies, args.initial, args.batch, args.rounds,
                                 args.seeds, args.test_fraction, args.passes, args.unit,
                                 args.start, args.cost, args.region_size)
    training = {}
    if Path(args.data).is_dir():
        images, labels, names = simulation.load_folder(args.data, config.max_image_pixels)
    else:
        from app.services import projects
        from app.deps import open_store
        store = open_store(config)
        with _db(config).session_scope() as s:
            pid = projects.find_project_id(s, args.data)
            images, labels, names = simulation.load_project(s, store, pid)
            training = simulation.round_settings(s, pid)    # fine-tune as the project does
    groups = simulation.load_groups(args.groups, names) if args.groups else None
    if args.steps:
        training = {**training, "steps_per_epoch": max(1, args.steps // 2)}
    print(f"{len(images)} images; strategies {', '.join(plan.strategies)}; "
          f"{len(plan.seeds)} seed(s) x {plan.rounds} rounds of {plan.batch} {plan.unit}(s), "
          f"from {plan.start}, cost in {plan.cost}", flush=True)
    rows, summary = simulation.run(
        images, labels, names, plan, Path(args.out), training, groups=groups,
        progress=lambda r: print(f"{r['strategy']:>10} seed {r['seed']} round {r['round']}: "
                                 f"{r['n_labelled']} labelled, cost {r['cost']}, "
                                 f"F1 {r['f1']:.3f}"
                                 + (f", macro-F1 {r['macro_f1']:.3f}" if "macro_f1" in r
                                    else f", Dice {r['dice']:.3f}"), flush=True))
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/curves.csv, curves.html, summary.json, summary.md")


def cmd_predict(config: Config, args) -> None:
    """Predict image files on disk (not in a project) with a model file, a model version or
    a project's active model (`app.services.predict_files`)."""
    from app.deps import open_store
    from app.permissions import SYSTEM
    from app.services import predict_files

    with _db(config).session_scope() as s:
        model = predict_files.model_for(s, SYSTEM, open_store(config), args.model)

    def report(done: predict_files.FilePrediction) -> None:
        if done.error:
            print(f"skipped: {done.name}: {done.error}", file=sys.stderr)
        else:
            print(f"{done.name}: {plural(done.count, 'cell')}")

    out = Path(args.out)
    results = predict_files.predict_files(model, predict_files.image_files(args.images), out,
                                          config.max_image_pixels, config.max_image_bytes,
                                          on_file=report)
    predicted = [r for r in results if r.error is None]
    print(f"predicted {len(predicted)} image(s) into {out}")
    if results and not predicted:
        raise CLIError("no image could be predicted")


def cmd_export_model(config: Config, args) -> None:
    from app.permissions import SYSTEM
    from app.services import model_versions
    from app.deps import open_store
    store = open_store(config)
    formats = tuple(f.strip() for f in args.format.split(","))
    with _db(config).session_scope() as s:
        paths = model_versions.export_version(s, SYSTEM, store, args.version, args.out, formats)
    for p in paths:
        print(f"wrote {p} (+ {p.with_suffix('.json').name})")


def cmd_train_builtin(_config: Config, args) -> None:
    """Rebuild the built-in nuclei model from the DSB 2018 folder (models/builtin.py): fixed
    split and seed; writes the weights, the JSON card and the markdown card into --out."""
    import time

    from models.builtin import DATA, DEFAULT_MINUTES, train_builtin
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    try:
        info = train_builtin(Path(args.data) if args.data else DATA, Path(args.out),
                             seed=args.seed, progress=say,
                             minutes=DEFAULT_MINUTES if args.minutes is None else args.minutes,
                             note=args.note or None)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {Path(args.out) / info['weights']['file']} (sha256 "
          f"{info['weights']['sha256'][:12]}), {info['name']}.json and {info['name']}.md; "
          f"macro-F1 {info['test']['macro_f1']:.3f}")


def cmd_run(config: Config, args) -> None:
    from app.wsgi import create_app
    server = create_app(config)
    server.extensions["dash_app"].run(host=args.host or config.host, port=args.port or config.port,
                                      debug=args.debug)


def worker_name(queues: str = "") -> str:
    suffix = "-" + queues.replace(",", "-") if queues else ""
    return f"cellloop{suffix}@{socket.gethostname()}"


def cmd_worker(config: Config, args) -> None:
    from app.jobs.celery_app import make_celery
    from app.jobs.kinds import QUEUES, UI_QUEUE
    from app.jobs.reaper import Reaper
    queues = [q.strip() for q in (args.queues or ",".join(QUEUES)).split(",") if q.strip()]
    unknown = [q for q in queues if q not in (*QUEUES, UI_QUEUE)]
    if unknown:
        raise CLIError(f"unknown queue(s) {', '.join(unknown)}; the queues are "
                       f"{', '.join((*QUEUES, UI_QUEUE))}")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if UI_QUEUE in queues:
        if not config.redis_url:
            raise CLIError("the ui queue (Dash background callbacks through Celery) needs "
                           "REDIS_URL; without it the web workers run them themselves")
        # The tasks of the ui queue are the Dash app's background callbacks: build the app
        # (as a web worker does) and serve its Celery app, which also holds the job task.
        from app.wsgi import create_app
        celery = create_app(config).extensions["dash_app"]._background_manager.handle
    else:
        celery = make_celery(config)
    reaper = Reaper(config, queues, celery)
    reaper.recover()          # jobs of dead workers fail; queued jobs are sent again
    reaper.start()            # ... and every few seconds while this worker runs
    argv = ["worker", f"--loglevel={config.log_level}", f"--concurrency={args.concurrency}",
            "-n", worker_name(",".join(queues)), "-Q", ",".join(queues),
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if args.pool:
        argv.append(f"--pool={args.pool}")
    try:
        celery.worker_main(argv)
    finally:
        reaper.stop()


def cmd_copy_to(config: Config, args) -> None:
    """Copy this (embedded) install to PostgreSQL + an object store, verified."""
    from app.scaleout_copy import CopyError, copy_install
    try:
        report = copy_install(config, args.database_url, args.storage_url)
    except CopyError as exc:
        raise CLIError(str(exc)) from None
    print("\n".join(report.lines()))
    print("verified: row counts and content digests equal, every blob hash-checked. Now run "
          "the web servers and workers with DATABASE_URL and STORAGE_URL set to the target "
          "(docs/deploy.md).")


def cmd_create_token(config: Config, args) -> None:
    """Issue an API token to an account and print it once (only its hash is kept)."""
    from app.permissions import SYSTEM
    from app.services import tokens
    with _db(config).session_scope() as s:
        new = tokens.create_token_for(s, SYSTEM, args.username, args.name, write=args.write,
                                      expires_days=args.expires_days)
    expiry = f", expires {new.info.expires_at:%Y-%m-%d}" if new.info.expires_at else ""
    print(f"# token {new.info.id} {new.info.name!r} for {new.info.username} "
          f"({new.info.scope}{expiry}); shown once, keep it secret:", file=sys.stderr)
    print(new.token)


# ----------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="CellLoop server commands")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init-db", help="create or upgrade the database").set_defaults(fn=cmd_init_db)
    c = sub.add_parser("create-user", help="create an account (password from stdin or prompt)")
    c.add_argument("username")
    c.add_argument("--admin", action="store_true", help="make the user a site admin")
    c.set_defaults(fn=cmd_create_user)
    c = sub.add_parser("set-password", help="reset a user's password (from stdin or prompt)")
    c.add_argument("username")
    c.set_defaults(fn=cmd_set_password)
    for name in ("activate-user", "deactivate-user"):
        c = sub.add_parser(name, help=f"{name.split('-')[0]} an account")
        c.add_argument("username")
        c.set_defaults(fn=cmd_set_active)
    sub.add_parser("list-users", help="list accounts").set_defaults(fn=cmd_list_users)
    c = sub.add_parser("create-token", help="issue an API token to an account (printed once)")
    c.add_argument("username")
    c.add_argument("--name", required=True, help="what the token is for")
    c.add_argument("--write", action="store_true", help="read-write (default: read only)")
    c.add_argument("--expires-days", type=int, default=None, help="default: never expires")
    c.set_defaults(fn=cmd_create_token)
    c = sub.add_parser("create-project", help="create a project")
    c.add_argument("name")
    c.add_argument("--owner", required=True, help="username of the owner")
    c.add_argument("--description", default="")
    c.add_argument("--channels", default="", help='e.g. "DAPI:#0000ff,GFP:#00ff00"')
    c.add_argument("--classes", default="", help='e.g. "nucleus:#ff0000"')
    c.add_argument("--starting-model", default=None, metavar="builtin|none|project:NAME",
                   help="the model the project starts from: the built-in nuclei model "
                        "(default, when installed), none, or another project's active model")
    c.add_argument("--mode", default="outlines", choices=["outlines", "points"],
                   help="how cells are marked: outlines (segmentation) or points (counting)")
    c.set_defaults(fn=cmd_create_project)
    sub.add_parser("list-projects", help="list projects").set_defaults(fn=cmd_list_projects)
    c = sub.add_parser("add-member", help="add a member or change their role")
    c.add_argument("project", help="project name or id")
    c.add_argument("username")
    c.add_argument("role", help="owner, reviewer, annotator or viewer")
    c.set_defaults(fn=cmd_add_member)
    c = sub.add_parser("training-settings", help="show or change a project's training "
                       "settings (KEY=VALUE ..., e.g. epochs=60 pull=20)")
    c.add_argument("project", help="project name or id")
    c.add_argument("changes", nargs="*", metavar="KEY=VALUE")
    c.set_defaults(fn=cmd_training_settings)
    c = sub.add_parser("counting-settings", help="show or change how a points project's "
                       "counting model is trained (KEY=VALUE ...: target=centres|density, "
                       "input_mapping=auto|none|nucleus-contrast-v1, steps=N, sigma=PX)")
    c.add_argument("project", help="project name or id")
    c.add_argument("changes", nargs="*", metavar="KEY=VALUE")
    c.set_defaults(fn=cmd_counting_settings)
    sub.add_parser("demo", help="load the demo project and accounts").set_defaults(fn=cmd_demo)
    c = sub.add_parser("import", help="import images (files, folders, .zip, .h5) into a project")
    c.add_argument("project", help="project name or id")
    c.add_argument("paths", nargs="+", help="image files, folders, .zip archives, .h5 files")
    c.add_argument("--masks", help="folder of label images matched to images by file stem")
    c.add_argument("--labelstudio", help="Label Studio JSON export with annotations of the "
                                         "images in the (single) folder given")
    c.add_argument("--points", help="folder of point CSVs (x,y[,class], or napari's "
                                    "axis-0,axis-1) matched to images by file stem")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(fn=cmd_import)
    c = sub.add_parser("export", help="export masks, counts and datasets")
    c.add_argument("project", help="project name or id")
    c.add_argument("out", help="output folder, or a .zip file")
    c.add_argument("--format", default="all",
                   help="tiff, png, hdf5, coco, counts, points or all (comma separated)")
    c.add_argument("--accepted-only", action="store_true",
                   help="only accepted annotations (each image's newest accepted version)")
    c.set_defaults(fn=cmd_export)
    c = sub.add_parser("train", help="train a model on a project's annotations (in this process)")
    c.add_argument("project", help="project name or id")
    c.add_argument("--epochs", type=int, default=None)
    c.add_argument("--max-minutes", type=float, default=None, help="time budget")
    c.add_argument("--scratch", action="store_true", help="do not fine-tune the active model")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cmd_train)
    c = sub.add_parser("score", help="rank a project's unannotated images (active learning)")
    c.add_argument("project")
    c.set_defaults(fn=cmd_score)
    c = sub.add_parser("simulate", help="active-learning simulation with ground truth as oracle")
    c.add_argument("data", help="a project name, or a folder with images/ and labels/")
    c.add_argument("--strategies", default="random,entropy,bald")
    c.add_argument("--initial", type=int, default=5)
    c.add_argument("--batch", type=int, default=5)
    c.add_argument("--rounds", type=int, default=8)
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--test-fraction", type=float, default=0.25)
    c.add_argument("--passes", type=int, default=8, help="MC-dropout samples")
    c.add_argument("--steps", type=int, default=0, help="training steps per round")
    c.add_argument("--unit", default="image", choices=["image", "region"],
                   help="acquire whole images or square regions (--region-size)")
    c.add_argument("--region-size", type=int, default=256)
    c.add_argument("--start", default="scratch", choices=["scratch", "builtin"],
                   help="the first model: none, or the built-in nuclei model")
    c.add_argument("--cost", default="images", choices=["images", "cells", "corrections"],
                   help="what an acquired unit costs: 1, its cells, or the corrections of "
                        "the current model's suggestion (redrawn + missed + false cells)")
    c.add_argument("--groups", default=None,
                   help="CSV of image stem, group: per-group F1 and macro-F1 in the curves")
    c.add_argument("--out", required=True)
    c.set_defaults(fn=cmd_simulate)
    c = sub.add_parser("predict", help="segment images; writes masks, overlays, counts.json")
    c.add_argument("model", help="project name (its active model), model version id, or a "
                                 ".cellloop/.pt/.onnx file")
    c.add_argument("images", nargs="+", help="image files or folders")
    c.add_argument("--out", required=True, help="output folder")
    c.set_defaults(fn=cmd_predict)
    c = sub.add_parser("export-model", help="export a model version (TorchScript, ONNX)")
    c.add_argument("version", type=int, help="model version id")
    c.add_argument("out", help="output folder")
    c.add_argument("--format", default="cellloop,torchscript,onnx")
    c.set_defaults(fn=cmd_export_model)
    c = sub.add_parser("train-builtin", help="rebuild the built-in nuclei model (nuclei-v1) "
                                             "from ../shared/data/dsb2018")
    c.add_argument("--out", required=True, help="output folder, e.g. models/pretrained/")
    c.add_argument("--minutes", type=float, default=None,
                   help="training time budget (default: models.builtin.DEFAULT_MINUTES)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--data", default=None, help="the DSB 2018 folder (default "
                                                "../shared/data/dsb2018 beside the checkout)")
    c.add_argument("--note", default="", help="a line for the model card (e.g. a short run)")
    c.set_defaults(fn=cmd_train_builtin)
    c = sub.add_parser("run", help="development server (use gunicorn in production)")
    c.add_argument("--host", default=None)
    c.add_argument("--port", type=int, default=None)
    c.add_argument("--debug", action="store_true")
    c.set_defaults(fn=cmd_run)
    c = sub.add_parser("copy-to", help="copy this install's database and blobs to "
                       "PostgreSQL + an object store (S3), verified by counts and hashes")
    c.add_argument("--database-url", required=True,
                   help="target, e.g. postgresql+psycopg://cellloop:PASSWORD@db:5432/cellloop")
    c.add_argument("--storage-url", required=True, help="target, e.g. s3://bucket/cellloop")
    c.set_defaults(fn=cmd_copy_to)
    c = sub.add_parser("worker", help="background job worker (Celery)")
    c.add_argument("--concurrency", type=int, default=1)
    c.add_argument("--pool", default="", help="Celery pool: prefork (default), solo, threads")
    c.add_argument("--queues", default="", help="queues to take jobs from: gpu (training, "
                   "scoring, prediction), cpu (imports); default both; ui: the "
                   "web pages' background callbacks, with REDIS_URL (docs/deploy.md)")
    c.set_defaults(fn=cmd_worker)
    return p


def main(argv: list[str] | None = None) -> int:
    from app.logging_setup import configure_logging
    args = build_parser().parse_args(argv)
    try:
        config = Config.from_env()
        configure_logging(config.log_level if args.command in ("run", "worker") else "WARNING")
        config.apply_to_models()
        args.fn(config, args)
    except (ConfigError, ServiceError, CLIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: the database is not ready ({exc.orig}); run `python -m app init-db` "
              "first", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
