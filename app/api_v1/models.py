"""/api/v1: a project's model versions (list, activate, download in each export format).
Downloads are written by a child process (`app.services.model_downloads`: never torch in a
web worker), cached, and streamed from disk."""
from __future__ import annotations

from app.api_v1 import files
from app.api_v1.auth import actor
from app.api_v1.registry import endpoint
from app.api_v1.schemas import ModelDownloadQuery, ModelList, ModelOut
from app.context import get_config, get_session
from app.services import model_downloads, model_versions


@endpoint("GET", "/projects/<int:project_id>/models", summary="A project's model versions, "
          "newest first", tag="models", response=ModelList)
def list_models(project_id: int):
    return ModelList(items=model_versions.list_versions(get_session(), actor(), project_id))


@endpoint("POST", "/models/<int:model_id>/activate", summary="Make a version the project's "
          "active model (also how to roll back)", tag="models", role="owner",
          response=ModelOut)
def activate_model(model_id: int):
    session = get_session()
    model_versions.activate(session, actor(), model_id)
    return _one(model_id)


def _one(model_id: int) -> ModelOut:
    session = get_session()
    mv = model_versions.version_for(session, actor(), model_id, "view")
    found = [v for v in model_versions.list_versions(session, actor(), mv.project_id)
             if v.id == model_id]
    return ModelOut.model_validate(found[0])


@endpoint("GET", "/models/<int:model_id>", summary="One model version", tag="models",
          response=ModelOut)
def get_model(model_id: int):
    return _one(model_id)


@endpoint("GET", "/models/<int:model_id>/download", summary="The model as a file: native "
          ".cellloop, TorchScript .pt or ONNX .onnx", tag="models", query=ModelDownloadQuery,
          media="application/octet-stream")
def download_model(model_id: int, query: ModelDownloadQuery):
    path = model_downloads.model_file(get_session(), actor(), get_config(), model_id,
                                      query.format)
    return files.model_file(path)
