"""Images page: upload images (with their label images) and label images on their own, an
import job's progress and outcome, a paged and sortable gallery with thumbnails and links
into the viewer and the annotation workspace, delete, export."""
from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import ALL, MATCH, Input, Output, State, callback, dcc, html

from app.context import get_config, state
from app.services import counting, exports, gallery, jobs, projects, uploads
from app.services.formats import MASK_UPLOAD_SUFFIXES, accepted_text
from app.states import ACTIVE_JOB_STATES, ImageStatus
from app.wording import plural
from pages._common import alert, call, error_page, to_int, status_word
from pages._imports import CANCEL, job_block, result_table, rows_of, summary_text

dash.register_page(__name__, path_template="/projects/<project_id>/images",
                   title="Images · CellLoop")

PROJECT_ID = "images-project-id"
UPLOAD = "images-upload"
UPLOAD_RESULT = "images-upload-result"
MASK_UPLOAD = "images-mask-upload"
MASK_REPLACE = "images-mask-replace"
MASK_RESULT = "images-mask-result"
JOB = "images-job"              # the ids of the import jobs this page follows
POLL = "images-job-poll"
JOB_STATUS = "images-job-status"
ANNOTATE = "images-annotate"    # pattern id type, keyed by image
STATUS = "images-filter-status"
SORT = "images-sort"
PAGER = "images-pager"
GALLERY = "images-gallery"
REFRESH = "images-refresh"
SELECT = "images-select"        # pattern id type, keyed by image
DELETE = "images-delete"
DELETE_MESSAGE = "images-delete-message"
FORMATS = "images-export-formats"
EXPORT = "images-export-link"
EXPORT_ACCEPTED = "images-export-accepted"
PER_PAGE = 24
STATUS_COLOURS = {ImageStatus.new: "secondary", ImageStatus.in_progress: "warning",
                  ImageStatus.annotated: "success", ImageStatus.reviewed: "primary",
                  ImageStatus.excluded: "dark"}



def gallery_grid(page: gallery.ImagePage, can_delete: bool, can_annotate: bool):
    if not page.items:
        return dbc.Alert("No images here yet. Upload some above, or use `python -m app import`.",
                         color="light", id="images-empty")
    cards = []
    for im in page.items:
        cards.append(dbc.Col(dbc.Card([
            html.A(html.Img(src=f"/api/images/{im.id}/thumbnail.jpg",
                            className="card-img-top thumb", alt=im.name),
                   href=f"/images/{im.id}"),
            dbc.CardBody([
                html.Div(dcc.Link(im.name, href=f"/images/{im.id}"), className="small text-truncate",
                         title=im.name),
                html.Div([dbc.Badge(status_word(im.status), color=STATUS_COLOURS.get(im.status, "light"),
                                    className="me-1"),
                          html.Span(f"{im.width}x{im.height}"
                                    + (f"x{im.n_planes}z" if im.n_planes > 1 else "")
                                    + (f" · {im.n_channels}ch" if im.n_channels > 1 else ""),
                                    className="small text-muted")]),
                html.Div([plural(im.n_cells, "cell") if im.n_cells is not None else "",
                          f" · {im.annotator}" if im.annotator else "",
                          f" · score {im.score:.3f}" if im.score is not None else ""],
                         className="small text-muted"),
                html.Div([
                    dcc.Link("Annotate", href=f"/annotate/{im.id}",
                             id={"type": ANNOTATE, "image": im.id},
                             className="btn btn-sm btn-outline-primary py-0 me-2")
                    if can_annotate and im.status != ImageStatus.excluded else None,
                    dbc.Checkbox(id={"type": SELECT, "image": im.id}, value=False,
                                 className="d-inline-block") if can_delete else None,
                ], className="mt-1 d-flex align-items-center"),
            ], className="p-2"),
        ], className="h-100 image-card"), xs=6, md=4, lg=3, xl=2, className="mb-3"))
    return dbc.Row(cards, id="images-grid")


def layout(project_id=None, **_query):
    pid = to_int(project_id)
    project, error = call(projects.get_project, pid)
    if error:
        return error_page(error)
    can_import = project.role in ("annotator", "reviewer", "owner")
    can_delete = project.role == "owner"
    running = _running_imports(pid) if can_import else []
    return html.Div([
        dcc.Store(id=PROJECT_ID, data=pid),
        dcc.Store(id=JOB, data=running),
        dcc.Store(id=REFRESH, data=0),
        dcc.Interval(id=POLL, interval=1500, disabled=not running),
        html.Div([html.H2(["Images · ", dcc.Link(project.name, href=f"/projects/{pid}")],
                          className="me-auto"),
                  dbc.Badge(project.role, color="info")],
                 className="d-flex align-items-center mb-3"),
        upload_card() if can_import else None,
        dbc.Row([
            dbc.Col(dcc.Dropdown([{"label": "all statuses", "value": ""}]
                                 + [{"label": status_word(s), "value": s} for s in ImageStatus],
                                 "", id=STATUS, clearable=False), md=3),
            dbc.Col(dcc.Dropdown([{"label": "oldest first", "value": "created"},
                                  {"label": "newest first", "value": "-created"},
                                  {"label": "name", "value": "name"},
                                  {"label": "status", "value": "status"},
                                  {"label": "most uncertain first", "value": "-score"},
                                  {"label": "annotator", "value": "annotator"},
                                  {"label": "most cells", "value": "-cells"}],
                                 "created", id=SORT, clearable=False), md=3),
            dbc.Col(dbc.Pagination(id=PAGER, max_value=1, active_page=1, fully_expanded=False,
                                   first_last=True, previous_next=True, size="sm"), md="auto"),
            dbc.Col([dbc.Button("Delete selected", id=DELETE, color="outline-danger", size="sm"),
                     dbc.Modal([dbc.ModalBody(id=DELETE + "-text"),
                                dbc.ModalFooter([dbc.Button("Cancel", id=DELETE + "-cancel",
                                                            color="secondary"),
                                                 dbc.Button("Delete", id=DELETE + "-confirm",
                                                            color="danger")])],
                               id=DELETE + "-modal", is_open=False)],
                    md="auto") if can_delete else None,
        ], className="g-2 mb-3 align-items-center"),
        html.Div(id=DELETE_MESSAGE),
        dcc.Loading(html.Div(id=GALLERY), type="dot"),
        html.Hr(),
        html.H5("Export"),
        dbc.Row([
            dbc.Col(dbc.Checklist(id=FORMATS, inline=True, value=default_formats(project),
                                  options=[{"label": {"tiff": "TIFF images + masks",
                                                      "png": "semantic PNG", "hdf5": "HDF5",
                                                      "coco": "COCO JSON",
                                                      "counts": "counts CSV/JSON",
                                                      "points": "points (CSV, napari, "
                                                                "Label Studio)"}[f],
                                            "value": f} for f in exports.FORMATS]), md="auto"),
            dbc.Col(dbc.Switch(id=EXPORT_ACCEPTED, value=False,
                               label="accepted annotations only"), md="auto"),
            dbc.Col(html.A("Download .zip", id=EXPORT, className="btn btn-outline-primary btn-sm",
                           href=f"/api/projects/{pid}/export.zip"), md="auto"),
        ], className="align-items-center mb-4"),
    ])


def default_formats(project) -> list[str]:
    """The export formats ticked at first: all of them in a counting project; in an outline
    project all but points (they would export nothing there)."""
    points = counting.is_points_project(project)
    return [f for f in exports.FORMATS if points or f != "points"]


def upload_card() -> dbc.Card:
    hint = "small text-muted mt-1"
    return dbc.Card(dbc.CardBody([
        dbc.Row([
            dbc.Col([
                html.H6("Images"),
                dcc.Upload(id=UPLOAD, multiple=True, className="upload-zone", children=html.Div(
                    ["Drop images here or ", html.A("choose files")])),
                html.Div(f"Accepted: {accepted_text()}.", className=hint,
                         id="images-accepted"),
                html.Div("A label image named like its image plus _masks (a.tif with "
                         "a_masks.tif) comes in as that image's annotation; in a .zip, put "
                         "label images in a labels/ or masks/ folder, and (counting projects) "
                         "point CSVs, a.csv or a_points.csv, in a points/ folder.",
                         className=hint),
            ], md=7),
            dbc.Col([
                html.H6("Label images (masks)"),
                dcc.Upload(id=MASK_UPLOAD, multiple=True, className="upload-zone",
                           children=html.Div(["Drop label images for images already here, "
                                              "or ", html.A("choose files")])),
                html.Div("Matched by file name: cell_01.tif, cell_01_masks.tif or "
                         "cell_01_labels.png go with the image cell_01. Each becomes an "
                         "imported annotation: 0 is background, and each cell has its own "
                         f"number. Accepted: {accepted_text(MASK_UPLOAD_SUFFIXES)}.",
                         className=hint),
                dbc.Checkbox(id=MASK_REPLACE, value=False, className="small mt-1",
                             label="Replace existing annotations (added as a new version; "
                                   "the history is kept)"),
            ], md=5),
        ], className="g-3"),
        dcc.Loading(html.Div([html.Div(id=UPLOAD_RESULT), html.Div(id=MASK_RESULT)]),
                    type="dot"),
        html.Div(id=JOB_STATUS, className="mt-2"),
    ]), className="mb-3")


def _running_imports(project_id: int) -> list[int]:
    """Import jobs of the project still queued or running (followed again after a reload)."""
    items, _error = call(jobs.list_jobs, project_id, 20)
    return [j.id for j in items or [] if j.kind == "import" and j.state in ACTIVE_JOB_STATES]


@callback(Output(GALLERY, "children"), Output(PAGER, "max_value"),
          Input(STATUS, "value"), Input(SORT, "value"), Input(PAGER, "active_page"),
          Input(REFRESH, "data"), State(PROJECT_ID, "data"))
def show_gallery(status, sort, page, _refresh, project_id):
    sort = sort or "created"
    result, error = call(gallery.list_images, to_int(project_id), page or 1, PER_PAGE,
                         sort.lstrip("-"), sort.startswith("-"), status or None)
    if error:
        return alert(error), 1
    project, _ = call(projects.get_project, to_int(project_id))
    role = project.role if project is not None else None
    return (gallery_grid(result, role == "owner", role in ("annotator", "reviewer", "owner")),
            result.n_pages)


def _outcome(outcome, summary_id: str, masks: bool, job_ids, refresh):
    """(results, followed jobs, poll disabled, gallery refresh) after an upload."""
    if outcome.job_id is None:
        rows = rows_of(outcome.results)
        ranked = jobs.ranking_sentence(outcome.ranking) if rows else ""
        shown = result_table(rows, summary_id, masks,
                             summary_text(rows, masks) + ranked if ranked else None)
        return shown, dash.no_update, dash.no_update, (refresh or 0) + 1
    n = len(outcome.results)
    shown = result_table(rows_of(outcome.results), summary_id, masks,
                         f"{n} file(s) refused before job #{outcome.job_id} started")
    return shown, list(job_ids or []) + [outcome.job_id], False, dash.no_update


@callback(Output(UPLOAD_RESULT, "children"), Output(JOB, "data"), Output(POLL, "disabled"),
          Output(REFRESH, "data", allow_duplicate=True),
          Input(UPLOAD, "contents"), State(UPLOAD, "filename"), State(PROJECT_ID, "data"),
          State(JOB, "data"), State(REFRESH, "data"), prevent_initial_call=True)
def upload_files(contents, filenames, project_id, job_ids, refresh):
    if not contents:
        raise dash.exceptions.PreventUpdate
    outcome, error = call(uploads.upload, state().store, get_config(), to_int(project_id),
                          list(zip(filenames or [], contents)), state().enqueue)
    if error:
        return alert(error), dash.no_update, dash.no_update, dash.no_update
    return _outcome(outcome, "images-upload-summary", False, job_ids, refresh)


@callback(Output(MASK_RESULT, "children"), Output(JOB, "data", allow_duplicate=True),
          Output(POLL, "disabled", allow_duplicate=True),
          Output(REFRESH, "data", allow_duplicate=True),
          Input(MASK_UPLOAD, "contents"), State(MASK_UPLOAD, "filename"),
          State(MASK_REPLACE, "value"), State(PROJECT_ID, "data"), State(JOB, "data"),
          State(REFRESH, "data"), prevent_initial_call=True)
def upload_masks(contents, filenames, replace, project_id, job_ids, refresh):
    if not contents:
        raise dash.exceptions.PreventUpdate
    outcome, error = call(uploads.upload_masks, state().store, get_config(), to_int(project_id),
                          list(zip(filenames or [], contents)), state().enqueue, bool(replace))
    if error:
        return alert(error), dash.no_update, dash.no_update, dash.no_update
    return _outcome(outcome, "images-mask-summary", True, job_ids, refresh)


@callback(Output(JOB_STATUS, "children"), Output(POLL, "disabled", allow_duplicate=True),
          Output(REFRESH, "data", allow_duplicate=True),
          Input(POLL, "n_intervals"), State(JOB, "data"), State(PROJECT_ID, "data"),
          State(REFRESH, "data"), prevent_initial_call=True)
def poll_jobs(_n, job_ids, project_id, refresh):
    """Each followed import job: progress while it runs, then its results or its failure;
    the gallery is refreshed once they are all over."""
    if not job_ids:
        return None, True, dash.no_update
    blocks, active = [], False
    for job_id in reversed(job_ids[-5:]):
        job, error = call(jobs.get_job, to_int(job_id))
        if error:
            blocks.append(alert(f"Job #{job_id}: {error}"))
            continue
        active = active or job.state in ACTIVE_JOB_STATES
        blocks.append(job_block(job, to_int(project_id)))
    return blocks, not active, dash.no_update if active else (refresh or 0) + 1


@callback(Output({"type": CANCEL, "job": MATCH}, "children"),
          Output({"type": CANCEL, "job": MATCH}, "disabled"),
          Input({"type": CANCEL, "job": MATCH}, "n_clicks"),
          State({"type": CANCEL, "job": MATCH}, "id"), prevent_initial_call=True)
def cancel_job(n_clicks, button):
    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    _job, error = call(uploads.cancel_import, get_config(), to_int(button["job"]),
                       state().store)
    return (error or "Cancelling..."), True


@callback(Output(DELETE + "-modal", "is_open"), Output(DELETE + "-text", "children"),
          Output(DELETE_MESSAGE, "children", allow_duplicate=True), Input(DELETE, "n_clicks"),
          State({"type": SELECT, "image": ALL}, "value"), prevent_initial_call=True)
def ask_delete(_n, values):
    """Ask first, saying how many images will go."""
    n = sum(1 for v in values or [] if v)
    if not n:
        return False, dash.no_update, alert("Select images first.", "warning")
    return True, (f"Delete {n} selected image{'s' if n > 1 else ''}? Their annotation "
                  "history stays in exports until purged."), None


@callback(Output(DELETE + "-modal", "is_open", allow_duplicate=True),
          Input(DELETE + "-cancel", "n_clicks"), prevent_initial_call=True)
def cancel_delete(_n):
    return False


@callback(Output(DELETE_MESSAGE, "children"), Output(REFRESH, "data", allow_duplicate=True),
          Output(DELETE + "-modal", "is_open", allow_duplicate=True),
          Input(DELETE + "-confirm", "n_clicks"),
          State({"type": SELECT, "image": ALL}, "value"),
          State({"type": SELECT, "image": ALL}, "id"),
          State(PROJECT_ID, "data"), State(REFRESH, "data"), prevent_initial_call=True)
def delete_selected(_n, values, ids, project_id, refresh):
    chosen = [i["image"] for i, v in zip(ids, values) if v]
    if not chosen:
        return alert("Select images first.", "warning"), dash.no_update, False
    n, error = call(gallery.delete_images, to_int(project_id), chosen)
    if error:
        return alert(error), dash.no_update, False
    return alert(f"Deleted {n} image(s).", "success"), (refresh or 0) + 1, False


@callback(Output(EXPORT, "href"), Input(FORMATS, "value"), Input(EXPORT_ACCEPTED, "value"),
          State(PROJECT_ID, "data"))
def export_link(formats, accepted, project_id):
    query = urlencode({"formats": ",".join(formats or []) or "counts",
                       **({"accepted": "1"} if accepted else {})})
    return f"/api/projects/{to_int(project_id)}/export.zip?{query}"
