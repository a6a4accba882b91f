"""/api/v1: an image's annotation versions (list; the newest or one version as a label TIFF
or as polygons/points JSON) and uploading a label image as a new version."""
from __future__ import annotations

from app.api_v1 import files
from app.api_v1.auth import actor
from app.api_v1.registry import endpoint
from app.api_v1.schemas import (AnnotationJson, AnnotationPolygons, AnnotationUploadForm,
                                ArrayFormatQuery, CellOut, UploadResultOut, VersionList)
from app.context import get_config, get_session, state
from app.errors import ValidationError
from app.imaging.outlines import cell_outlines
from app.services import annotations, image_data


def cells(labels, cell_classes: dict | None = None) -> list[CellOut]:
    if labels is None:
        return []
    classes = cell_classes or {}
    return [CellOut(label=label, class_index=int(classes.get(str(label), 0)), polygon=polygon)
            for label, polygon in sorted(cell_outlines(labels).items())]


@endpoint("GET", "/images/<int:image_id>/annotations", summary="Every saved annotation "
          "version of an image, newest first", tag="annotations", response=VersionList)
def list_annotations(image_id: int):
    return VersionList(items=annotations.history(get_session(), actor(), image_id))


def _annotation(image_id: int, version: int | None, fmt: str):
    found = image_data.annotation(get_session(), actor(), state().store, image_id, version)
    get_session().rollback()
    if fmt == "json":
        return AnnotationJson(image_id=found.image_id, version=found.version,
                              width=found.width, height=found.height, n_cells=found.n_cells,
                              source=found.source, review_state=found.review_state,
                              cells=cells(found.labels, found.cell_classes),
                              points=found.points, region=found.region is not None)
    if found.labels is None:
        raise ValidationError("This version has points only (counting); ask for format=json.")
    return files.labels_tiff(found.labels, f"image-{image_id}-v{found.version}_masks.tif",
                             found.region, {"X-Annotation-Version": found.version,
                                            "X-Cell-Count": found.n_cells})


@endpoint("GET", "/images/<int:image_id>/annotations/latest", summary="The newest annotation "
          "(label TIFF, or JSON polygons and points)", tag="annotations",
          query=ArrayFormatQuery, response=AnnotationJson, media=files.TIFF)
def get_latest_annotation(image_id: int, query: ArrayFormatQuery):
    return _annotation(image_id, None, query.format)


@endpoint("GET", "/images/<int:image_id>/annotations/<int:version>", summary="One annotation "
          "version (label TIFF, or JSON polygons and points)", tag="annotations",
          query=ArrayFormatQuery, response=AnnotationJson, media=files.TIFF)
def get_annotation(image_id: int, version: int, query: ArrayFormatQuery):
    return _annotation(image_id, version, query.format)


@endpoint("POST", "/images/<int:image_id>/annotations", summary="Upload a label image as a "
          "new annotation version (imported, accepted)", tag="annotations", role="annotator",
          form=AnnotationUploadForm, response=UploadResultOut, status=201,
          files={"file": "The instance label image (TIFF, PNG or NPY; 0 = background), the "
                         "image's size"})
def upload_annotation(image_id: int, form: AnnotationUploadForm):
    """As 'Label images (masks)' on the images page: an image that has an annotation keeps
    it unless `replace` (reviewers and owners); the result's status is attached, skipped (the
    same labels, or an annotation exists) or rejected (wrong size, not a label image)."""
    (name, data), *more = files.uploaded("file")
    if more:
        raise ValidationError("Send one label image per request.")
    result = image_data.attach_labels(get_session(), actor(), state().store, get_config(),
                                      image_id, name, data, form.replace)
    return _attached(result)


@endpoint("POST", "/images/<int:image_id>/annotations/polygons", summary="Upload cells as "
          "polygons as a new annotation version (imported, accepted)", tag="annotations",
          role="annotator", body=AnnotationPolygons, response=UploadResultOut, status=201)
def upload_polygons(image_id: int, body: AnnotationPolygons):
    """The polygons are rasterised to a label image of the image's size, which is then
    treated exactly as an uploaded label image (statuses, `replace`, limits). The `cells` of
    GET .../annotations/latest?format=json can be sent back as they are."""
    result = image_data.attach_polygons(get_session(), actor(), state().store, get_config(),
                                        image_id, [c.polygon for c in body.cells], body.replace)
    return _attached(result)


def _attached(result):
    if result.status == "rejected":
        raise ValidationError(result.message)
    if result.status != "attached":
        get_session().rollback()
        return UploadResultOut.model_validate(result), 200
    return UploadResultOut.model_validate(result)
