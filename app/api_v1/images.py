"""/api/v1: a project's images (list with filters and paging, upload, get, pixels as TIFF,
delete). Uploads go through `app.services.uploads.upload`, the browser's own path: the same
accepted types, limits, label pairing (`a_masks.tif` with `a.tif`) and background import of
large batches."""
from __future__ import annotations

from app.api_v1 import files
from app.api_v1.auth import actor
from app.api_v1.registry import endpoint
from app.api_v1.schemas import DeletedOut, ImageOut, ImagePageOut, ImagesQuery, UploadOut
from app.context import get_config, get_session, state
from app.services import gallery, image_data, uploads


@endpoint("GET", "/projects/<int:project_id>/images", summary="List a project's images "
          "(paged, sorted, filtered by status)", tag="images", query=ImagesQuery,
          response=ImagePageOut)
def list_images(project_id: int, query: ImagesQuery):
    page = gallery.list_images(get_session(), actor(), project_id, query.page, query.per_page,
                               query.sort, query.descending, query.status)
    return ImagePageOut(items=page.items, total=page.total, page=page.page,
                        per_page=page.per_page, n_pages=page.n_pages)


@endpoint("POST", "/projects/<int:project_id>/images", summary="Upload one or many images",
          tag="images", role="annotator", response=UploadOut, status=201,
          files={"files": "Image files (TIFF/OME-TIFF, PNG, JPEG, NPY, HDF5, .zip); a label "
                          "image named like its image plus _masks (a_masks.tif) becomes its "
                          "annotation"})
def upload_images(project_id: int):
    """The same validation and limits as the browser: files of other types, and zips that
    declare a bomb, are rejected by name; a big batch is imported by a job (`job_id`)."""
    outcome = uploads.upload(get_session(), actor(), state().store, get_config(), project_id,
                             files.uploaded(), state().enqueue)
    return UploadOut(results=outcome.results, job_id=outcome.job_id)


@endpoint("GET", "/images/<int:image_id>", summary="One image's details", tag="images",
          response=ImageOut)
def get_image(image_id: int):
    return ImageOut.model_validate(gallery.get_image(get_session(), actor(), image_id))


@endpoint("GET", "/images/<int:image_id>/pixels.tif", summary="The image as a TIFF (full "
          "resolution, stored dtype; axes ZCYX with singleton Z and C dropped)", tag="images",
          media=files.TIFF)
def get_pixels(image_id: int):
    found = image_data.pixels(get_session(), actor(), state().store, image_id)
    get_session().rollback()          # nothing stays open while the file is sent
    stem = found.name.rsplit(".", 1)[0] or f"image-{image_id}"
    return files.image_tiff(found.zcyx, found.channel_names, f"{stem}.tif")


@endpoint("DELETE", "/images/<int:image_id>", summary="Delete an image (owners; soft: its "
          "history stays in exports until purged)", tag="images", role="owner",
          response=DeletedOut)
def delete_image(image_id: int):
    session = get_session()
    detail = gallery.get_image(session, actor(), image_id)
    return DeletedOut(deleted=gallery.delete_images(session, actor(), detail.project_id,
                                                    [image_id]))
