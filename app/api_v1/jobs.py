"""/api/v1: background jobs (start training, scoring or prediction; status and progress;
cancel) and predictions (predict images; their masks and counts). Everything slow runs in
the worker: starting returns the job at once (202), and the client polls it."""
from __future__ import annotations

from app.api_v1 import files
from app.api_v1.annotations import cells
from app.api_v1.auth import actor
from app.api_v1.registry import endpoint
from app.api_v1.schemas import (JobList, JobOut, JobStart, JobsQuery, PredictionJson,
                                PredictionQuery, PredictionsStart)
from app.context import get_config, get_session, state
from app.errors import ValidationError
from app.services import image_data, jobs, prediction, scoring, training, uploads


@endpoint("POST", "/projects/<int:project_id>/jobs", summary="Start a training, scoring or "
          "prediction job", tag="jobs", role="annotator", body=JobStart, response=JobOut,
          status=202)
def start_job(project_id: int, body: JobStart):
    """train and score need a reviewer or owner, predict an annotator or above (as on the
    pages); one training or scoring job per project at a time (409 `conflict`)."""
    session, who, enqueue = get_session(), actor(), state().enqueue
    if body.kind != "predict" and body.image_ids is not None:
        raise ValidationError("image_ids: only prediction jobs take image ids.")
    if body.kind == "train":
        info = training.start_training(session, who, project_id, body.params, enqueue)
    elif body.kind == "score":
        info = scoring.start_scoring(session, who, project_id, enqueue)
    else:
        info = prediction.start_project_prediction(session, who, project_id, enqueue,
                                                   image_ids=body.image_ids)
    return JobOut.model_validate(info)


@endpoint("GET", "/projects/<int:project_id>/jobs", summary="A project's jobs, newest first",
          tag="jobs", query=JobsQuery, response=JobList)
def list_jobs(project_id: int, query: JobsQuery):
    return JobList(items=jobs.list_jobs(get_session(), actor(), project_id, query.limit))


@endpoint("GET", "/jobs/<int:job_id>", summary="A job's state, progress (0..1), message and "
          "result", tag="jobs", response=JobOut)
def get_job(job_id: int):
    return JobOut.model_validate(jobs.get_job(get_session(), actor(), job_id))


@endpoint("POST", "/jobs/<int:job_id>/cancel", summary="Ask a job to stop (who started it, "
          "project owners, site admins)", tag="jobs", role="viewer", response=JobOut)
def cancel_job(job_id: int):
    """As the pages cancel: an upload's import job that had not started also has its staged
    files removed (`uploads.cancel_import`); any other job is `jobs.cancel_job`."""
    return JobOut.model_validate(uploads.cancel_import(get_session(), actor(), get_config(),
                                                       job_id, state().store))


@endpoint("POST", "/projects/<int:project_id>/predictions", summary="Predict images with the "
          "active model (a prediction job)", tag="predictions", role="annotator",
          body=PredictionsStart, response=JobOut, status=202)
def start_predictions(project_id: int, body: PredictionsStart):
    """When the job is done its result has `counts` ({image name: cells}); each image's
    mask is then at /api/v1/images/{image_id}/prediction."""
    info = prediction.start_project_prediction(get_session(), actor(), project_id,
                                               state().enqueue, image_ids=body.image_ids)
    return JobOut.model_validate(info)


@endpoint("GET", "/images/<int:image_id>/prediction", summary="A model's predicted cells of "
          "an image (label TIFF, or JSON polygons), after a prediction job", tag="predictions",
          query=PredictionQuery, response=PredictionJson, media=files.TIFF)
def get_prediction(image_id: int, query: PredictionQuery):
    found = image_data.predicted(get_session(), actor(), get_config(), image_id, query.model)
    get_session().rollback()
    if query.format == "json":
        return PredictionJson(image_id=image_id, model_version_id=found.model_version_id,
                              n_cells=found.n_cells, cells=cells(found.labels))
    return files.labels_tiff(found.labels, f"image-{image_id}-model{found.model_version_id}"
                             "_masks.tif", headers={"X-Cell-Count": found.n_cells,
                                                    "X-Model-Version": found.model_version_id})
