"""Flask routes that serve pixels and files (never through Dash callbacks): image renderings,
thumbnails, annotation overlays and export downloads. Each checks the user's access through
the same services as the pages, and sends ETags so browsers cache renderings."""
from __future__ import annotations

import secrets

from flask import Blueprint, Response, jsonify, request, send_file

from app.context import current_actor, get_config, get_session, state
from app.errors import ServiceError
from app.services import display, exports

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    return jsonify(error=str(exc)), exc.http_status


def _cached(rendered: display.Rendered) -> Response:
    response = Response(rendered.data, mimetype=rendered.mimetype)
    response.set_etag(rendered.etag)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response.make_conditional(request)


def _not_modified(etag: str) -> Response | None:
    if etag in request.if_none_match:
        response = Response(status=304)
        response.set_etag(etag)
        return response
    return None


@bp.get("/images/<int:image_id>/render.<ext>")
def render(image_id: int, ext: str):
    fmt = {"jpg": "JPEG", "png": "PNG"}.get(ext)
    if fmt is None:
        return jsonify(error="use .jpg or .png"), 404
    z = request.args.get("z", 0, type=int)
    size = request.args.get("size", 1024, type=int)
    views = request.args.get("views")
    actor, session = current_actor(), get_session()
    hit = _not_modified(display.image_etag(session, actor, image_id, z, views, size, fmt))
    if hit is not None:
        return hit
    return _cached(display.render_image(session, actor, state().store, image_id, z, views,
                                        size, fmt))


@bp.get("/images/<int:image_id>/thumbnail.jpg")
def thumbnail(image_id: int):
    actor, session = current_actor(), get_session()
    hit = _not_modified(display.image_etag(session, actor, image_id, 0, None, 160, "JPEG"))
    if hit is not None:
        return hit
    return _cached(display.render_image(session, actor, state().store, image_id, 0, None,
                                        160, "JPEG"))


@bp.get("/images/<int:image_id>/overlay.png")
def overlay(image_id: int):
    version = request.args.get("version", None, type=int)
    size = request.args.get("size", 1024, type=int)
    return _cached(display.render_overlay(get_session(), current_actor(), state().store,
                                          image_id, version, size))


@bp.get("/images/<int:image_id>/draft.png")
def draft_overlay(image_id: int):
    """The workspace overlay of the user's draft (`rev` in the URL only changes the address
    when the draft changes; the response is never cached, drafts change under one URL)."""
    selected = request.args.get("selected", 0, type=int)
    size = request.args.get("size", 1024, type=int)
    rendered = display.render_draft(get_session(), current_actor(), get_config(), state().store,
                                    image_id, selected, size)
    response = Response(rendered.data, mimetype=rendered.mimetype)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/images/<int:image_id>/uncertainty.png")
def uncertainty_overlay(image_id: int):
    """The active model's uncertainty map of an image (after scoring), as a heat map whose
    colour scale `display.uncertainty_scale` gives the page."""
    rendered = display.render_uncertainty(get_session(), current_actor(), get_config(), image_id)
    response = Response(rendered.data, mimetype=rendered.mimetype)
    response.headers["Cache-Control"] = "no-store"      # rescoring rewrites it
    return response


@bp.get("/images/<int:image_id>/pixel.json")
def pixel(image_id: int):
    """Raw values of every channel at (z, y, x) in full-resolution pixels: the readout under
    the cursor. Pixels never change, so the browser may keep the answer."""
    found = display.pixel_values(get_session(), current_actor(), state().store, image_id,
                                 request.args.get("z", 0, type=int),
                                 request.args.get("y", -1, type=int),
                                 request.args.get("x", -1, type=int))
    response = jsonify(x=found.x, y=found.y, z=found.z, values=found.values,
                       channels=found.channels)
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.get("/images/<int:image_id>/prediction.png")
def prediction_overlay(image_id: int):
    from app.services.prediction_render import render_prediction
    return _cached(render_prediction(get_session(), current_actor(), get_config(), image_id,
                                     request.args.get("model", type=int),
                                     request.args.get("size", 1024, type=int)))


@bp.get("/models/<int:version_id>/export.<fmt>")
def export_model(version_id: int, fmt: str):
    """A model file; exported by a child process (never torch in a web worker), then cached."""
    from app.services import model_downloads
    formats = {"cellloop": "cellloop", "pt": "torchscript", "onnx": "onnx"}
    if fmt not in formats:
        return jsonify(error="use .cellloop, .pt or .onnx"), 404
    path = model_downloads.model_file(get_session(), current_actor(), get_config(), version_id,
                                      formats[fmt])
    return send_file(path, as_attachment=True, download_name=path.name, max_age=0)


@bp.get("/projects/<int:project_id>/counts.csv")
def counts_csv(project_id: int):
    """Cells per image and its group (the project page's Counts section), as CSV."""
    from app.services import project_counts
    rows = project_counts.project_counts(get_session(), current_actor(), get_config(),
                                         project_id, request.args.get("pattern", ""))
    return Response(project_counts.counts_csv(rows), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=cellloop-project-{project_id}-counts.csv"})


@bp.get("/projects/<int:project_id>/export.zip")
def export(project_id: int):
    formats = exports.parse_formats(request.args.get("formats", "all"))
    folder = get_config().data_dir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    exports.remove_old_exports(folder)
    path = folder / f"project-{project_id}-{secrets.token_hex(8)}.zip"
    accepted = request.args.get("accepted", "") in ("1", "true", "yes", "on")
    exports.export_zip(get_session(), current_actor(), state().store, project_id, path, formats,
                       accepted_only=accepted)
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=f"cellloop-project-{project_id}.zip")
