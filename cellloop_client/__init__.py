"""A Python client for the CellLoop HTTP API (`/api/v1`), for notebooks, acquisition scripts
and pipelines::

    from cellloop_client import Client
    cl = Client("http://cellloop.lab:8050", token="cl_...")   # or CELLLOOP_TOKEN / _URL
    project = cl.project_id("My project")
    cl.upload_folder(project, "plate1/")                       # a_masks.tif goes with a.tif
    job = cl.wait(cl.train(project, max_minutes=5))             # progress bar
    cl.wait(cl.predict(project))
    masks = cl.predictions(project)                             # {image id: (Y, X) labels}

It needs only `requests`, `numpy` and `tifffile` (and `tqdm` for progress bars, when
installed); it does not import CellLoop itself, so it can be copied to any machine. Errors
from the server raise `ApiError` with its stable `code` (see docs/api.md); a 429 (rate
limit) is retried after the server's Retry-After.
"""
from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import requests
import tifffile

__all__ = ["Client", "ApiError", "JobFailed"]

# Client-side conveniences only (the server validates every file): which files of a folder
# to send, and which belong together (a label image goes in the same request as its image,
# so the server pairs them: `a_masks.tif` with `a.tif`).
SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".h5", ".hdf5", ".zip")
_MASK_RE = re.compile(r"(_cp_masks|_masks|_mask|_labels|_label)$")
_STEM_RE = re.compile(r"(\.ome)?\.[^.]+$", re.I)
FINISHED = ("done", "failed", "cancelled")


class ApiError(Exception):
    """The server refused a request: `status` (HTTP), `code` (stable) and `message`."""

    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class JobFailed(Exception):
    """A job ended failed or cancelled; `job` is its last state."""

    def __init__(self, job: dict):
        super().__init__(f"job {job['id']} ({job['kind']}) {job['state']}: "
                         f"{job.get('error') or job.get('message')}")
        self.job = job


def _group_key(path: Path) -> str:
    return _MASK_RE.sub("", _STEM_RE.sub("", path.name))


class Client:
    """One CellLoop server, as the account that owns `token`."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 300,
                 retries: int = 5, session: requests.Session | None = None):
        self.url = (url or os.environ.get("CELLLOOP_URL") or "http://127.0.0.1:8050").rstrip("/")
        token = token or os.environ.get("CELLLOOP_TOKEN")
        if not token:
            raise ValueError("Give a token (create one on your account page), or set "
                             "CELLLOOP_TOKEN.")
        self.timeout, self.retries = timeout, retries
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    # ------------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """One API call (`path` under /api/v1); raises ApiError on a refusal."""
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(self.retries + 1):   # (bodies are bytes: safe to send again)
            response = self.http.request(method, f"{self.url}/api/v1{path}", **kwargs)
            if response.status_code == 429 and attempt < self.retries:
                time.sleep(min(float(response.headers.get("Retry-After", 1)), 60))
                continue
            break
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:500]}
            raise ApiError(response.status_code, error.get("code", "?"),
                           error.get("message", ""), error.get("details"))
        return response

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v is not None}).json()

    def post(self, path: str, json: dict | None = None, **kwargs) -> Any:
        return self.request("POST", path, json=json, **kwargs).json()

    @staticmethod
    def _tiff(response: requests.Response) -> np.ndarray:
        return tifffile.imread(io.BytesIO(response.content))

    # ------------------------------------------------------------------ account, projects
    def me(self) -> dict:
        return self.get("/me")

    def projects(self) -> list[dict]:
        return self.get("/projects")["items"]

    def project(self, project: int | str) -> dict:
        return self.get(f"/projects/{self.project_id(project)}")

    def project_id(self, project: int | str) -> int:
        """A project's id from its id or its name."""
        if isinstance(project, int):
            return project
        for p in self.projects():
            if p["name"] == project or str(p["id"]) == str(project):
                return p["id"]
        raise ApiError(404, "not_found", f"No project {project!r} that you are a member of.")

    # ------------------------------------------------------------------ images
    def images(self, project: int | str, status: str | None = None,
               sort: str = "created") -> list[dict]:
        """Every image of the project (all pages), optionally of one status."""
        pid, out, page = self.project_id(project), [], 1
        while True:
            got = self.get(f"/projects/{pid}/images", page=page, per_page=200, status=status,
                           sort=sort)
            out += got["items"]
            if page >= got["n_pages"]:
                return out
            page += 1

    def upload(self, project: int | str, paths: Iterable[str | os.PathLike]) -> dict:
        """Upload files in one request: {"results": [...], "job_id": ...} (`job_id`: the
        server imports a large batch in the background)."""
        files = [("files", (Path(p).name, Path(p).read_bytes())) for p in paths]
        return self.post(f"/projects/{self.project_id(project)}/images", files=files)

    def upload_folder(self, project: int | str, folder: str | os.PathLike,
                      recursive: bool = False, batch_files: int = 20,
                      batch_bytes: int = 32 << 20, progress: bool = True) -> list[dict]:
        """Upload every image file of a folder, in requests of at most `batch_files` files
        and about `batch_bytes` (a label image travels with its image). Returns one result
        per file (imported, duplicate, rejected); files handed to an import job are waited
        for."""
        pid = self.project_id(project)
        folder = Path(folder)
        found = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir())
                       if p.is_file() and not p.name.startswith(".")
                       and p.name.lower().endswith(SUFFIXES))
        groups: dict[str, list[Path]] = {}
        for path in found:
            groups.setdefault(str(path.parent / _group_key(path)), []).append(path)
        batches, batch, size = [], [], 0
        for group in groups.values():
            group_size = sum(p.stat().st_size for p in group)
            if batch and (len(batch) + len(group) > batch_files or size + group_size > batch_bytes):
                batches.append(batch)
                batch, size = [], 0
            batch += group
            size += group_size
        if batch:
            batches.append(batch)
        results = []
        bar = _bar(len(found), f"upload to project {pid}", "file") if progress else None
        try:
            for batch in batches:
                answer = self.upload(pid, batch)
                results += answer["results"]
                if answer.get("job_id"):
                    job = self.wait(answer["job_id"], progress=False)
                    results.append({"name": f"(import job {job['id']})", "status": job["state"],
                                    "message": job["message"], "image_id": None,
                                    "n_cells": None})
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return results

    def image(self, image_id: int) -> dict:
        return self.get(f"/images/{image_id}")

    def image_array(self, image_id: int) -> np.ndarray:
        """The full-resolution pixels (singleton Z and C axes dropped: (Y, X), (C, Y, X),
        (Z, Y, X) or (Z, C, Y, X))."""
        return self._tiff(self.request("GET", f"/images/{image_id}/pixels.tif"))

    def delete_image(self, image_id: int) -> None:
        self.request("DELETE", f"/images/{image_id}")

    # ------------------------------------------------------------------ annotations
    def annotations(self, image_id: int) -> list[dict]:
        """Every saved version of the image's annotation, newest first."""
        return self.get(f"/images/{image_id}/annotations")["items"]

    def annotation(self, image_id: int, version: int | None = None) -> np.ndarray:
        """An annotation as its (Y, X) instance label image (the newest by default)."""
        which = "latest" if version is None else str(int(version))
        pages = self._tiff(self.request("GET", f"/images/{image_id}/annotations/{which}"))
        return pages[0] if pages.ndim == 3 else pages

    def annotation_json(self, image_id: int, version: int | None = None) -> dict:
        """An annotation as polygons ({"cells": [{"label", "class_index", "polygon"}]}) and
        points."""
        which = "latest" if version is None else str(int(version))
        return self.get(f"/images/{image_id}/annotations/{which}", format="json")

    def upload_annotation(self, image_id: int, labels: np.ndarray | str | os.PathLike,
                          replace: bool = False) -> dict:
        """Add a label image (an array, or a file) as the image's newest annotation version."""
        if isinstance(labels, np.ndarray):
            buf = io.BytesIO()
            tifffile.imwrite(buf, labels, compression="zlib")
            name, data = "labels.tif", buf.getvalue()
        else:
            name, data = Path(labels).name, Path(labels).read_bytes()
        return self.post(f"/images/{image_id}/annotations", files={"file": (name, data)},
                         data={"replace": "true" if replace else "false"})

    def upload_polygons(self, image_id: int, polygons: list, replace: bool = False) -> dict:
        """Add cells given as polygons ([[x, y], ...] each, full-resolution pixels) as the
        image's newest annotation version; `annotation_json(...)["cells"]` works as input."""
        cells = [p if isinstance(p, dict) else {"polygon": [list(map(float, v)) for v in p]}
                 for p in polygons]
        return self.post(f"/images/{image_id}/annotations/polygons",
                         json={"cells": cells, "replace": replace})

    # ------------------------------------------------------------------ models
    def models(self, project: int | str) -> list[dict]:
        return self.get(f"/projects/{self.project_id(project)}/models")["items"]

    def activate_model(self, model_id: int) -> dict:
        return self.post(f"/models/{model_id}/activate")

    def download_model(self, model_id: int, out: str | os.PathLike = ".",
                       format: str = "cellloop") -> Path:
        """Save a model file (cellloop, torchscript or onnx) into folder `out`, streamed."""
        response = self.request("GET", f"/models/{model_id}/download",
                                params={"format": format}, stream=True)
        name = re.findall(r'filename="?([^";]+)', response.headers.get(
            "Content-Disposition", "")) or [f"model-{model_id}.{format}"]
        path = Path(out) / Path(name[0]).name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for chunk in response.iter_content(1 << 20):
                f.write(chunk)
        return path

    # ------------------------------------------------------------------ jobs
    def start_job(self, project: int | str, kind: str, params: dict | None = None,
                  image_ids: list[int] | None = None) -> dict:
        body = {"kind": kind, "params": params or {}}
        if image_ids is not None:
            body["image_ids"] = list(image_ids)
        return self.post(f"/projects/{self.project_id(project)}/jobs", json=body)

    def train(self, project: int | str, **params) -> dict:
        """Start training (reviewers and owners): epochs, max_minutes, seed, fine_tune."""
        return self.start_job(project, "train", params)

    def score(self, project: int | str) -> dict:
        return self.start_job(project, "score")

    def predict(self, project: int | str, image_ids: list[int] | None = None) -> dict:
        """Start predicting the project's images (or only `image_ids`) with its active model."""
        body = {} if image_ids is None else {"image_ids": list(image_ids)}
        return self.post(f"/projects/{self.project_id(project)}/predictions", json=body)

    def job(self, job_id: int) -> dict:
        return self.get(f"/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict:
        return self.post(f"/jobs/{job_id}/cancel")

    def wait(self, job: dict | int, timeout: float | None = None, poll: float = 1.0,
             progress: bool = True) -> dict:
        """Poll a job until it ends, with a progress bar; returns it when done, raises
        JobFailed when it failed or was cancelled, TimeoutError after `timeout` seconds."""
        job_id = job["id"] if isinstance(job, dict) else int(job)
        started = time.monotonic()
        state = self.job(job_id)
        bar = _bar(100, f"job {job_id} ({state['kind']})", "%") if progress else None
        try:
            while state["state"] not in FINISHED:
                if bar is not None:
                    bar.n = round(100 * state["progress"])
                    bar.set_postfix_str(state["message"][:60], refresh=True)
                if timeout is not None and time.monotonic() - started > timeout:
                    raise TimeoutError(f"job {job_id} still {state['state']} after {timeout} s")
                time.sleep(poll)
                state = self.job(job_id)
            if bar is not None:
                bar.n = 100 if state["state"] == "done" else bar.n
                bar.set_postfix_str(state["state"], refresh=True)
        finally:
            if bar is not None:
                bar.close()
        if state["state"] != "done":
            raise JobFailed(state)
        return state

    # ------------------------------------------------------------------ predictions
    def prediction(self, image_id: int, model: int | None = None) -> np.ndarray:
        """The (Y, X) predicted label image of an image (after a prediction job)."""
        params = {"model": model} if model is not None else None
        return self._tiff(self.request("GET", f"/images/{image_id}/prediction", params=params))

    def segment(self, project: int | str, paths: Iterable[str | os.PathLike],
                timeout: float | None = None, progress: bool = True) -> dict[str, np.ndarray]:
        """Upload image files into the project, predict them with its active model and return
        {file name: (Y, X) labels}. A file already in the project is predicted as it is there;
        a refused file raises ApiError before anything is predicted."""
        paths = [Path(p) for p in paths]
        answer = self.upload(project, paths)
        refused = [r for r in answer["results"] if r["status"] == "rejected"]
        if refused:
            raise ApiError(400, "invalid", "; ".join(r["message"] for r in refused))
        ids = {r["name"]: r["image_id"] for r in answer["results"] if r.get("image_id")}
        if answer.get("job_id"):                 # a large batch: imported by a job
            self.wait(answer["job_id"], timeout=timeout, progress=progress)
            names = {p.name for p in paths}
            ids.update({i["name"]: i["id"] for i in self.images(project) if i["name"] in names})
        self.wait(self.predict(project, sorted(set(ids.values()))), timeout=timeout,
                  progress=progress)
        return {name: self.prediction(image_id) for name, image_id in ids.items()}

    def prediction_json(self, image_id: int, model: int | None = None) -> dict:
        return self.get(f"/images/{image_id}/prediction", format="json", model=model)

    def predictions(self, project: int | str, image_ids: list[int] | None = None,
                    model: int | None = None) -> dict[int, np.ndarray]:
        """{image id: (Y, X) labels} for the project's images (or `image_ids`) that have a
        prediction by the model (the active one by default)."""
        ids = image_ids if image_ids is not None else [i["id"] for i in self.images(project)]
        out = {}
        for image_id in ids:
            try:
                out[image_id] = self.prediction(image_id, model)
            except ApiError as exc:
                if exc.status != 404 or image_ids is not None:
                    raise
        return out


def _bar(total: int, desc: str, unit: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:        # progress bars are optional
        return None
    return tqdm(total=total, desc=desc, unit=unit)
