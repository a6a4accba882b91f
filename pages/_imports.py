"""Display of upload outcomes on the Images page: the per-file results of an import (or of
attaching label images), and an import job from queued to its end: progress while it runs,
then its results, or why it failed. Ids and classes here are stable for tests:
`images-upload-summary`, `images-mask-summary` (result lines of an upload done at once, or of
the files refused before its job started); class `images-job-outcome` (the line that ends a
job: "Import #5 finished: 2 imported, ...", "Import #5 failed: <reason>"),
`{"type": "images-job-cancel", "job": id}` (Cancel while it is queued or running)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.services.jobs import JobInfo
from app.states import ACTIVE_JOB_STATES, JobState
from app.wording import plural
from pages._jobs import job_progress

CANCEL = "images-job-cancel"    # pattern id type, keyed by job
COLOURS = {"imported": "success", "restored": "info", "duplicate": "secondary",
           "rejected": "danger", "attached": "success", "skipped": "secondary"}


def rows_of(results) -> list[dict]:
    """ImportResults as the plain rows a job result holds."""
    return [{"name": r.name, "status": r.status, "message": r.message, "n_cells": r.n_cells,
             "restored": r.restored, "image_id": r.image_id} for r in results]


def summary_text(rows: list[dict], masks: bool = False) -> str:
    n = {s: sum(r["status"] == s for r in rows) for s in COLOURS}
    if masks:
        return (f"{n['attached']} label images attached, {n['skipped']} skipped, "
                f"{n['rejected']} rejected")
    restored = sum(bool(r.get("restored")) for r in rows)
    return (f"{n['imported']} imported" + (f" ({restored} restored)" if restored else "")
            + f", {n['duplicate']} duplicates, {n['rejected']} rejected")


def _row(r: dict) -> html.Tr:
    status = "restored" if r.get("restored") else r["status"]
    name = (dcc.Link(r["name"], href=f"/images/{r['image_id']}")
            if r.get("image_id") and r["status"] != "rejected" else r["name"])
    message = r.get("message") or (plural(r['n_cells'], "cell") if r.get("n_cells") is not None
                                   else "")
    return html.Tr([html.Td(name), html.Td(dbc.Badge(status, color=COLOURS.get(status, "light"))),
                    html.Td(message, className="small")])


def result_table(rows: list[dict], summary_id: str | None, masks: bool = False,
                 summary: str | None = None):
    """The per-file results under a summary line (`summary`, or the counts; none when
    `summary_id` is None)."""
    if not rows:
        return None
    line = (html.P(summary or summary_text(rows, masks), className="mb-1", id=summary_id)
            if summary_id else None)
    return html.Div([
        line,
        dbc.Table(html.Tbody([_row(r) for r in rows]), size="sm",
                  className="small upload-results")])


def job_block(job: JobInfo, project_id: int):
    """One import job on the page that started it."""
    masks = bool(job.result.get("attach_masks"))
    what = "Label images" if masks else "Import"
    if job.state in ACTIVE_JOB_STATES:
        cancel = (html.Span("Cancelling...", className="small text-muted")
                  if job.cancel_requested else
                  dbc.Button("Cancel", id={"type": CANCEL, "job": job.id}, size="sm",
                             color="outline-danger", className="py-0"))
        return html.Div([job_progress(job), cancel], className="mb-2")
    if job.state == JobState.done:
        rows = job.result.get("files", [])
        return html.Div([
            html.Div(f"{what} #{job.id} finished: {summary_text(rows, masks)}.",
                     className="fw-semibold images-job-outcome text-success"),
            result_table(rows, None, masks)], className="mb-2")
    reason = job.error or job.message or "no reason was recorded"
    after = ("Files imported before it stopped stay in the project; upload the rest again."
             if not masks else "Label images attached before it stopped stay attached.")
    verb = "failed" if job.state == JobState.failed else "was cancelled"
    return dbc.Alert([html.Div(f"{what} #{job.id} {verb}: {reason}",
                               className="fw-semibold images-job-outcome"),
                      html.Div([after, " ", dcc.Link("All jobs",
                                                    href=f"/projects/{project_id}/jobs")],
                               className="small")],
                     color="danger" if job.state == JobState.failed else "warning", className="mb-2")
