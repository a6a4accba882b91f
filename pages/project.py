"""Project page: progress, image counts, images sent back to the user, annotation effort
(the model's validation F1 against cumulative corrections and active minutes), cells per
image and per group (pages._counts), and (for
owners) members and their roles, channels and classes, the annotation mode and, in points
mode, how the counting model is trained."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from dash import ALL, MATCH, Input, Output, State, callback, ctx, dcc, html

from app.permissions import ROLE_NAMES
from app.permissions import Role
from app.services import annotations, counting, effort
from app.services.project_settings import AUTO, STAIN
from app.services import projects as svc
from app.states import ImageStatus, ReviewState
from pages import _counts
from pages._common import alert, call, error_page, to_int
from pages._review_lists import returned_to_me_section

dash.register_page(__name__, path_template="/projects/<project_id>", title="Project · CellLoop")

PROJECT_ID = "project-id"
MEMBERS = "project-members"
ADD_USER = "project-add-username"
SUGGESTIONS = "project-add-suggestions"
ADD_ROLE = "project-add-role"
ADD = "project-add-member"
MESSAGE = "project-message"
ROLE = "project-member-role"        # pattern id type, keyed by user
REMOVE = "project-member-remove"    # pattern id type
ROW_STATUS = "project-member-status"  # pattern id type
MODE, MODE_STATUS = "project-annotation-mode", "project-annotation-mode-status"
SELF_REVIEW, SELF_REVIEW_STATUS = "project-self-review", "project-self-review-status"
REMOVE_MODAL, REMOVE_TEXT = "project-remove-modal", "project-remove-text"
REMOVE_TARGET = "project-remove-target"
REMOVE_CONFIRM, REMOVE_CANCEL = "project-remove-confirm", "project-remove-cancel"
COUNTING, COUNT_STATUS = "project-counting", "project-counting-status"
COUNT_TARGET, COUNT_INPUT = "project-count-target", "project-count-input"
CHANNELS, CLASSES = "project-channels", "project-classes"
LABELS_SAVE, LABELS_STATUS = "project-labels-save", "project-labels-status"
CLASS_BADGES = "project-class-badges"
EFFORT, EFFORT_FIGURE = "project-effort", "project-effort-figure"



def stats(p: svc.ProjectSummary) -> dbc.Row:
    pct = round(100 * p.progress)
    cards = [("Images", p.n_images, "project-n-images"),
             ("Annotated", p.n_annotated, "project-n-annotated"),
             ("Excluded", p.status_counts.get(ImageStatus.excluded, 0), "project-n-excluded")]
    cols = [dbc.Col(dbc.Card(dbc.CardBody([html.Div(label, className="text-muted small"),
                                           html.Div(str(value), className="stat", id=cid)])),
                    md=3) for label, value, cid in cards]
    cols.append(dbc.Col(dbc.Card(dbc.CardBody([
        html.Div("Annotation progress", className="text-muted small"),
        dbc.Progress(value=pct, label=f"{pct}%", className="mt-2", id="project-progress")])),
        md=3))
    return dbc.Row(cols, className="mb-4 g-3")


def effort_figure(curve: effort.EffortCurve) -> go.Figure:
    """Validation F1 of each trained model against the corrections (left) and the active
    editing minutes (right) saved before it."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06)
    points = [p for p in curve.points if p.f1 is not None]
    text = [f"model #{p.model_version_id}" for p in points]
    fig.add_trace(go.Scatter(x=[p.corrections for p in points], y=[p.f1 for p in points],
                             text=text, mode="lines+markers", name="by corrections"), 1, 1)
    fig.add_trace(go.Scatter(x=[p.minutes for p in points], y=[p.f1 for p in points],
                             text=text, mode="lines+markers", name="by minutes"), 1, 2)
    fig.update_xaxes(title_text="cumulative corrections (cells)", row=1, col=1)
    fig.update_xaxes(title_text="cumulative active minutes", row=1, col=2)
    fig.update_yaxes(title_text="validation F1", range=[0, 1], row=1, col=1)
    fig.update_layout(height=260, margin=dict(l=50, r=10, t=10, b=40), showlegend=False)
    return fig


def effort_section(curve: effort.EffortCurve | None) -> html.Div | None:
    if curve is None or (not curve.n_versions and not curve.points):
        return None
    c = curve.counts
    totals = (f"{curve.n_versions} saved version(s): {curve.corrections} corrections "
              f"({c['added']} cells added, {c['deleted']} deleted, {c['reshaped']} reshaped; "
              f"{c['kept']} kept) in {curve.minutes:.1f} active minutes.")
    has_f1 = any(p.f1 is not None for p in curve.points)
    return html.Div([
        html.H4("Annotation effort"),
        html.P(totals, className="small", id="project-effort-totals"),
        dcc.Graph(figure=effort_figure(curve), id=EFFORT_FIGURE,
                  config={"displayModeBar": False}) if has_f1 else
        html.P("No trained model with a validation F1 yet.", className="small text-muted"),
    ], className="mb-4", id=EFFORT)


def member_rows(members: list[svc.MemberInfo], can_manage: bool):
    rows = []
    for m in members:
        if can_manage:
            role = dcc.Dropdown(ROLE_NAMES, m.role, id={"type": ROLE, "user": m.user_id},
                                clearable=False, style={"minWidth": "10rem"})
            action = dbc.Button("Remove", id={"type": REMOVE, "user": m.user_id}, size="sm",
                                color="outline-danger")
        else:
            role, action = dbc.Badge(m.role, color="info"), None
        rows.append(html.Tr([html.Td(m.username), html.Td(role), html.Td(action),
                             html.Td(id={"type": ROW_STATUS, "user": m.user_id},
                                     className="small")]))
    return dbc.Table([html.Thead(html.Tr([html.Th("User"), html.Th("Role"), html.Th(""),
                                          html.Th("")])),
                      html.Tbody(rows)], hover=True, size="sm", id="project-members-table")


def add_member_form() -> dbc.Row:
    """Username with autocomplete (accounts that are not members yet, as a datalist the
    browser offers while typing), role, Add."""
    return dbc.Row([
        dbc.Col([dbc.Input(id=ADD_USER, placeholder="username (type to search)",
                           list=SUGGESTIONS, autocomplete="off"),
                 html.Datalist(id=SUGGESTIONS)], md=4),
        dbc.Col(dcc.Dropdown(ROLE_NAMES, "annotator", id=ADD_ROLE, clearable=False), md=3),
        dbc.Col(dbc.Button("Add member", id=ADD, color="primary"), md="auto"),
    ], className="g-2 mb-2")


def remove_modal() -> dbc.Modal:
    return dbc.Modal([
        dbc.ModalHeader(dbc.ModalTitle("Remove member")),
        dbc.ModalBody(id=REMOVE_TEXT),
        dbc.ModalFooter([dbc.Button("Cancel", id=REMOVE_CANCEL, color="secondary"),
                         dbc.Button("Remove", id=REMOVE_CONFIRM, color="danger")]),
    ], id=REMOVE_MODAL, is_open=False)


def named_colours(items: list[dict]) -> str:
    """The "name:#colour, ..." text the create form takes."""
    return ", ".join(f"{c['name']}:{c['color']}" for c in items)


def class_badges(classes: list[dict]) -> list:
    return [dbc.Badge(c["name"], color=c["color"], className="me-1 class-badge")
            for c in classes]


def labels_editor(project) -> html.Div:
    return html.Div([
        html.H5("Channels and cell classes"),
        dbc.Row([
            dbc.Col([dbc.Label("Channels (name:colour, comma separated)", html_for=CHANNELS),
                     dbc.Input(id=CHANNELS, value=named_colours(project.channels))], md=6),
            dbc.Col([dbc.Label("Cell classes (name:colour)", html_for=CLASSES),
                     dbc.Input(id=CLASSES, value=named_colours(project.classes))], md=6),
        ], className="g-2"),
        html.Div("Rename or recolour freely. Once there are images, the number of channels "
                 "stays. Classes keep their place in the list: add new ones at the end; a "
                 "class can be removed only from the end and only while no annotation uses it.",
                 className="small text-muted mt-1"),
        dbc.Button("Save channels and classes", id=LABELS_SAVE, size="sm", color="primary",
                   className="mt-2"),
        html.Div(id=LABELS_STATUS, className="small mt-1"),
    ], className="mb-4")


def mode_setting(project) -> html.Div:
    mode = (project.settings or {}).get("annotation_mode", "outlines")
    return html.Div([
        html.H5("Annotation mode"),
        dbc.RadioItems(id=MODE, value=mode, inline=True, options=[
            {"label": "Outlines (segmentation)", "value": "outlines"},
            {"label": "Points (counting)", "value": "points"}]),
        html.Div(id=MODE_STATUS, className="small"),
        counting_setting(project.id, mode),
        dbc.Switch(id=SELF_REVIEW, value=svc.allows_self_review(project), className="mt-2",
                   label="Reviewers may accept versions they saved themselves (e.g. a lab of "
                         "one; off: a second person accepts)"),
        html.Div(id=SELF_REVIEW_STATUS, className="small"),
    ], className="mb-4")


def counting_setting(pid: int, mode: str) -> html.Div:
    """How a points project's counting model is trained: what it regresses and what it reads
    (app.services.counting.set_counting_settings; steps and sigma: the CLI). Shown in points
    mode."""
    shown = None if mode == "points" else {"display": "none"}
    current, error = call(counting.counting_settings, pid)
    if error:
        return html.Div(alert(error), id=COUNTING, style=shown)
    mapping = current["input_mapping"] or "none"
    inputs = [{"label": "Reads what suits the images (the nuclear stain for bright-field "
                        "colour, e.g. H&E)", "value": AUTO},
              {"label": "Reads the image's channels", "value": "none"},
              {"label": "Reads the nuclear stain (haematoxylin of H&E images; other images "
                        "as grey, inverted on a light background)", "value": STAIN}]
    if mapping not in {o["value"] for o in inputs}:          # set before these choices
        inputs.append({"label": f"Reads {counting.describe_input(mapping)}", "value": mapping})
    return html.Div([
        html.H6("Counting model", className="mb-1"),
        dbc.RadioItems(id=COUNT_TARGET, value=current["target"], inline=True, options=[
            {"label": "Centre heat-map: its peaks are the cells (recommended)",
             "value": "centres"},
            {"label": "Density: the count is its sum", "value": "density"}]),
        dbc.RadioItems(id=COUNT_INPUT, value=mapping, inline=True, options=inputs),
        html.Div("The next training uses these. A model that regresses or reads something "
                 "else than the active one is trained from scratch, and becomes active only "
                 "if it counts the validation images better. \"What suits the images\" "
                 "keeps what the active counting model reads.", className="small text-muted"),
        html.Div(id=COUNT_STATUS, className="small"),
    ], id=COUNTING, className="border-start ps-3 my-2", style=shown)


def _buttons(project, counts: dict) -> html.Div:
    pid, role = project.id, Role[project.role]
    waiting = counts.get(ReviewState.submitted, 0)
    review = "Review" + (f" ({waiting} waiting)" if waiting and role >= Role.reviewer else "")
    return html.Div([
        dbc.Button("Annotate", href=f"/projects/{pid}/annotate", color="success",
                   className="me-2", id="project-annotate-link", external_link=True)
        if role >= Role.annotator else None,
        dbc.Button(review, href=f"/projects/{pid}/review", color="info",
                   className="me-2", id="project-review-link"),
        dbc.Button("Images", href=f"/projects/{pid}/images", color="primary",
                   className="me-2", id="project-images-link"),
        dbc.Button("Active learning", href=f"/projects/{pid}/learning",
                   color="secondary", className="me-2", id="project-learning-link"),
        dbc.Button("Jobs", href=f"/projects/{pid}/jobs", color="secondary",
                   className="me-2", id="project-jobs-link"),
        dbc.Button("Models", href=f"/projects/{pid}/models", color="secondary",
                   className="me-2", id="project-models-link")], className="mb-3")


def layout(project_id=None, queue=None, **_query):
    pid = to_int(project_id)
    project, error = call(svc.get_project, pid)
    if error:
        return error_page(error)
    members, _ = call(svc.list_members, pid)
    counts, _ = call(annotations.review_counts, pid)
    returned, _ = (call(annotations.returned_to_me, pid)
                   if Role[project.role] >= Role.annotator else ([], None))
    can_manage = project.role == "owner"
    curve, _ = call(effort.effort_curve, pid)
    return html.Div([
        dcc.Store(id=PROJECT_ID, data=pid),
        dcc.Store(id=REMOVE_TARGET),
        html.Div([html.H2(project.name, className="me-3", id="project-name"),
                  dbc.Badge(project.role, color="info", id="project-role")],
                 className="d-flex align-items-center"),
        html.P(project.description, className="text-muted"),
        dbc.Alert("No images are waiting to be annotated.", color="info", id="project-queue-empty")
        if queue == "empty" else None,
        _buttons(project, counts or {}),
        returned_to_me_section(pid, returned) if returned else None,
        html.Div(class_badges(project.classes), className="mb-3", id=CLASS_BADGES),
        stats(project),
        effort_section(curve),
        mode_setting(project) if can_manage else None,
        labels_editor(project) if can_manage else None,
        html.H4("Members"),
        add_member_form() if can_manage else None,
        html.Div(id=MESSAGE),
        html.Div(member_rows(members or [], can_manage), id=MEMBERS),
        remove_modal() if can_manage else None,
        # last: its plot draws when plotly.js has loaded, and nothing below it may move
        # then (a click on the members form landed on a moving page)
        _counts.section(pid),
    ])


@callback(Output(SUGGESTIONS, "children"), Input(ADD_USER, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def suggest_users(text, project_id):
    """Autocomplete: accounts whose name contains what was typed (owners only)."""
    names, error = call(svc.member_candidates, to_int(project_id), text or "")
    return [html.Option(value=name) for name in (names or [])] if not error else []


@callback(Output(MEMBERS, "children"), Output(MESSAGE, "children"),
          Output(ADD_USER, "value"),
          Input(ADD, "n_clicks"),
          State(PROJECT_ID, "data"), State(ADD_USER, "value"), State(ADD_ROLE, "value"),
          prevent_initial_call=True)
def add_member(_n, project_id, username, role):
    if not (username or "").strip():
        return dash.no_update, alert("Type the name of the user to add.", "warning"), \
            dash.no_update
    member, error = call(svc.set_member, to_int(project_id), username, role or "")
    if error:
        return dash.no_update, alert(error), dash.no_update
    members, _ = call(svc.list_members, to_int(project_id))
    return member_rows(members or [], True), alert(
        f"{member.username} is now {member.role}.", color="success"), None


@callback(Output({"type": ROW_STATUS, "user": MATCH}, "children"),
          Input({"type": ROLE, "user": MATCH}, "value"),
          State({"type": ROLE, "user": MATCH}, "id"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def change_role(role, component_id, project_id):
    member, error = call(svc.set_role, to_int(project_id), to_int(component_id.get("user")),
                         role or "")
    if error:
        return html.Span(error, className="text-danger")
    return html.Span(f"saved: {member.role}", className="text-success")


@callback(Output(REMOVE_MODAL, "is_open"), Output(REMOVE_TEXT, "children"),
          Output(REMOVE_TARGET, "data"),
          Input({"type": REMOVE, "user": ALL}, "n_clicks"), State(PROJECT_ID, "data"),
          prevent_initial_call=True)
def ask_remove(clicks, project_id):
    """A row's Remove button asks first, naming the member and the project."""
    target = ctx.triggered_id
    if not isinstance(target, dict) or not any(clicks or []) or not ctx.triggered[0]["value"]:
        raise dash.exceptions.PreventUpdate      # the table was redrawn, nothing clicked
    project, error = call(svc.get_project, to_int(project_id))
    members, _ = call(svc.list_members, to_int(project_id))
    member = next((m for m in members or [] if m.user_id == target.get("user")), None)
    if error or member is None:
        raise dash.exceptions.PreventUpdate
    return True, [html.P(f"Remove {member.username} ({member.role}) from {project.name}?"),
                  html.P("They can no longer open its images. The annotations they saved "
                         "stay in the project's history.", className="small text-muted")], \
        member.user_id


@callback(Output(REMOVE_MODAL, "is_open", allow_duplicate=True),
          Input(REMOVE_CANCEL, "n_clicks"), prevent_initial_call=True)
def cancel_remove(_n):
    return False


@callback(Output(MEMBERS, "children", allow_duplicate=True),
          Output(MESSAGE, "children", allow_duplicate=True),
          Output(REMOVE_MODAL, "is_open", allow_duplicate=True),
          Input(REMOVE_CONFIRM, "n_clicks"), State(REMOVE_TARGET, "data"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def remove_member(_n, user_id, project_id):
    members, _ = call(svc.list_members, to_int(project_id))
    name = next((m.username for m in members or [] if m.user_id == to_int(user_id)), "")
    _, error = call(svc.remove_member, to_int(project_id), to_int(user_id))
    if error:
        return dash.no_update, alert(error), False
    members, _ = call(svc.list_members, to_int(project_id))
    return (member_rows(members or [], True),
            alert(f"{name} was removed from the project.", "success"), False)


@callback(Output(LABELS_STATUS, "children"), Output(CLASS_BADGES, "children"),
          Input(LABELS_SAVE, "n_clicks"), State(CHANNELS, "value"), State(CLASSES, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def save_labels(_n, channels, classes, project_id):
    project, error = call(svc.update_channels_and_classes, to_int(project_id),
                          svc.parse_named_colours(channels or ""),
                          svc.parse_named_colours(classes or ""))
    if error:
        return html.Span(error, className="text-danger"), dash.no_update
    return (html.Span(f"saved: {len(project.channels)} channel(s), "
                      f"{len(project.classes)} class(es)", className="text-success"),
            class_badges(project.classes))


@callback(Output(MODE_STATUS, "children"), Output(COUNTING, "style"), Input(MODE, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def change_mode(mode, project_id):
    saved, error = call(svc.set_annotation_mode, to_int(project_id), mode or "")
    if error:
        return html.Span(error, className="text-danger"), dash.no_update
    return (html.Span(f"saved: {saved}", className="text-success"),
            None if saved == "points" else {"display": "none"})


@callback(Output(COUNT_STATUS, "children"), Input(COUNT_TARGET, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def change_count_target(target, project_id):
    return _save_counting(project_id, {"target": target})


@callback(Output(COUNT_STATUS, "children", allow_duplicate=True), Input(COUNT_INPUT, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def change_count_input(mapping, project_id):
    return _save_counting(project_id, {"input_mapping": mapping})


def _save_counting(project_id, change: dict):
    saved, error = call(counting.set_counting_settings, to_int(project_id), change)
    if error:
        return html.Span(error, className="text-danger")
    return html.Span(f"saved: the next counting model regresses a "
                     f"{'centre heat-map' if saved['target'] == 'centres' else 'density'} "
                     f"and reads {counting.describe_input(saved['input_mapping'])}",
                     className="text-success")


@callback(Output(SELF_REVIEW_STATUS, "children"), Input(SELF_REVIEW, "value"),
          State(PROJECT_ID, "data"), prevent_initial_call=True)
def change_self_review(allowed, project_id):
    saved, error = call(svc.set_self_review, to_int(project_id), bool(allowed))
    if error:
        return html.Span(error, className="text-danger")
    return html.Span("saved: self-review " + ("allowed" if saved else "off"),
                     className="text-success")
