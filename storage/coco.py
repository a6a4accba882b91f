"""COCO instance-segmentation JSON: write from label images, read back into label images.

Masks are stored as uncompressed RLE (column-major run lengths starting with background),
which COCO tools (pycocotools `frPyObjects`) accept. Reading also accepts polygons.
"""
from __future__ import annotations

import numpy as np


def encode_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a boolean (Y, X) mask."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_rle(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        raise ValueError("compressed COCO RLE strings are not supported; export uncompressed RLE")
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for n in counts:
        if value:
            flat[pos:pos + n] = True
        pos += n
        value = not value
    return flat.reshape((w, h)).T


def decode_polygons(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros(shape, bool)
    for poly in polygons:
        xy = np.asarray(poly, float).reshape(-1, 2)
        rr, cc = fill_polygon(xy[:, 1], xy[:, 0], shape)
        mask[rr, cc] = True
    return mask


def labels_to_annotations(labels: np.ndarray, image_id: int, first_ann_id: int,
                          classes: dict[int, int] | None = None) -> list[dict]:
    """COCO annotations for each instance in `labels` (category = 1 + class index)."""
    from scipy import ndimage

    out = []
    slices = ndimage.find_objects(labels)
    for label_id, sl in enumerate(slices, 1):
        if sl is None:
            continue
        mask = labels == label_id
        ys, xs = sl
        out.append({
            "id": first_ann_id + len(out), "image_id": image_id,
            "category_id": 1 + int((classes or {}).get(label_id, 0)),
            "segmentation": encode_rle(mask), "area": int(mask.sum()),
            "bbox": [int(xs.start), int(ys.start), int(xs.stop - xs.start),
                     int(ys.stop - ys.start)],
            "iscrowd": 0, "cellloop_label": label_id,
        })
    return out


def annotations_to_labels(annotations: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """Instance label image from COCO annotations (later annotations win on overlap)."""
    labels = np.zeros(shape, np.uint32)
    for k, ann in enumerate(annotations, 1):
        seg = ann["segmentation"]
        mask = decode_rle(seg) if isinstance(seg, dict) else decode_polygons(seg, shape)
        labels[mask] = ann.get("cellloop_label", k)
    return labels.astype(np.uint16 if labels.max(initial=0) <= 65535 else np.uint32)
