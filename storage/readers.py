"""Read microscopy images and label images into one canonical layout, validating first.

Every image becomes a 4-D array with axes Z, C, Y, X (`ImageData.pixels`), keeping its
dtype (uint8/uint16/float32 ...; never rescaled). How source axes map:

- TIFF/OME-TIFF: axes from OME or ImageJ metadata via tifffile. Samples (RGB, `S`) and
  channels (`C`) become C; `Z`, `T` and other plane axes (`I`, `Q`) are stacked into Z.
  Without metadata a 3-D TIFF is planes (Z) unless its last axis has 3-4 samples (RGB).
- PNG/JPEG: RGB is 3 channels; alpha is dropped; an image whose colour channels are all
  identical (grey stored as RGB/RGBA) becomes 1 channel.
- NPY: 2-D is YX; 3-D is YXC when the last axis has at most 4 entries, CYX when the first
  has at most 8, else ZYX; 4-D is ZCYX.

Readers look at the header before decoding, so decompression bombs (more pixel values than
`max_pixels`, or more decoded bytes than `max_bytes`) are refused without allocating memory;
`declared_size` gives the same header figures to callers that must decide where to decode
(the web worker hands big files to the background worker). Every failure is an
`ImageReadError` whose message names the file.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".h5", ".hdf5"}
SUPPORTED_DTYPES = {np.dtype(t) for t in
                    ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64",
                     "bool")}
DEFAULT_MAX_PIXELS = 1 << 28
DEFAULT_MAX_BYTES = 512 << 20     # decoded bytes per image (Config.max_image_bytes)


class ImageReadError(ValueError):
    """A file could not be used; the message says which and why."""


@dataclass
class ImageData:
    pixels: np.ndarray              # (Z, C, Y, X)
    source_axes: str                # axes as found in the file, e.g. "ZCYX", "YXS"
    channel_names: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]


def _suffix(name: str) -> str:
    name = name.lower()
    if name.endswith(".ome.tif") or name.endswith(".ome.tiff"):
        return ".tif"
    return Path(name).suffix


def human_bytes(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class Declared:
    """What a file's header says it decodes to, before anything is decoded."""
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int          # decoded size in memory (an upper estimate for PNG/JPEG)


def _check_size(name: str, shape, max_pixels: int, itemsize: int | None = None,
                max_bytes: int | None = None) -> None:
    """Refuse an empty image, more than `max_pixels` values, or (with `itemsize`) more than
    `max_bytes` decoded bytes. Counts are Python ints: no overflow for absurd headers."""
    dims = [int(s) for s in shape]
    if any(d <= 0 for d in dims):
        raise ImageReadError(f"{name}: the image is empty (shape {tuple(dims)}).")
    n = 1
    for d in dims:
        n *= d
    if n > max_pixels:
        raise ImageReadError(f"{name}: {n:,} pixel values is more than the limit of "
                             f"{max_pixels:,} (MAX_IMAGE_PIXELS); refusing to load it.")
    if itemsize is not None and max_bytes is not None and n * itemsize > max_bytes:
        raise ImageReadError(
            f"{name}: decodes to {human_bytes(n * itemsize)} ({' x '.join(map(str, dims))} "
            f"values of {itemsize} byte(s)), more than the limit of {human_bytes(max_bytes)} "
            "per image; refusing to decode it (an administrator can raise MAX_IMAGE_BYTES).")


def _check_dtype(name: str, dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise ImageReadError(f"{name}: pixel type {dtype} is not supported "
                             "(use 8/16/32-bit integers or float).")
    return dtype


def _finish(name: str, pixels: np.ndarray, axes: str, names: list[str] | None = None) -> ImageData:
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8)
    if pixels.dtype == np.float64:
        with np.errstate(over="ignore"):   # values beyond float32 become inf: refused below
            pixels = pixels.astype(np.float32)
    if pixels.ndim != 4 or pixels.shape[2] < 1 or pixels.shape[3] < 1:
        raise ImageReadError(f"{name}: could not arrange axes {axes!r} as Z, C, Y, X.")
    if pixels.shape[1] > 64:
        raise ImageReadError(f"{name}: {pixels.shape[1]} channels is more than 64; check "
                             "the axis order.")
    if np.issubdtype(pixels.dtype, np.floating) and not all_finite(pixels):
        raise ImageReadError(f"{name}: the image contains NaN or infinite values; replace them "
                             "(e.g. with 0) before importing.")
    return ImageData(np.ascontiguousarray(pixels), axes, list(names or []))


def all_finite(array: np.ndarray, chunk: int = 1 << 22) -> bool:
    """Whether a float array holds no NaN/inf, checked in slices (no full-size temporary)."""
    flat = array.reshape(-1)
    return all(np.isfinite(flat[i:i + chunk]).all() for i in range(0, flat.size, chunk))


def _to_zcyx(name: str, array: np.ndarray, axes: str) -> np.ndarray:
    """Rearrange an array with tifffile-style axes into (Z, C, Y, X)."""
    axes = axes.upper()
    if len(axes) != array.ndim:
        raise ImageReadError(f"{name}: axes {axes!r} do not match shape {array.shape}.")
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{name}: no Y/X axes in {axes!r}.")
    chan = [i for i, a in enumerate(axes) if a in "CS"]
    planes = [i for i, a in enumerate(axes) if a not in "CSYX"]
    order = planes + chan + [axes.index("Y"), axes.index("X")]
    out = np.transpose(array, order)
    n_planes = int(np.prod([array.shape[i] for i in planes])) if planes else 1
    n_chan = int(np.prod([array.shape[i] for i in chan])) if chan else 1
    return out.reshape(n_planes, n_chan, out.shape[-2], out.shape[-1])


def _read_tiff(name: str, data: bytes, max_pixels: int, max_bytes: int) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if not tif.series:
                raise ImageReadError(f"{name}: the TIFF holds no image.")
            series = tif.series[0]
            dtype = _check_dtype(name, series.dtype)
            _check_size(name, series.shape, max_pixels, dtype.itemsize, max_bytes)
            axes = series.axes
            names: list[str] = []
            if tif.is_ome and tif.ome_metadata:
                names = _ome_channel_names(tif.ome_metadata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = series.asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        raise ImageReadError(f"{name}: not a readable TIFF ({type(exc).__name__}: {exc}).") from None
    if array.ndim == 3 and axes in ("QYX", "IYX"):
        axes = "ZYX"
    pixels = _to_zcyx(name, array, axes)
    if len(names) != pixels.shape[1]:
        names = []
    return _finish(name, pixels, axes, names)


def _ome_channel_names(xml: str) -> list[str]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    names = []
    for el in root.iter():
        if el.tag.endswith("}Channel") or el.tag == "Channel":
            if el.get("Name"):
                names.append(el.get("Name"))
    return names


def _pillow_itemsize(mode: str) -> int:
    """Bytes per pixel of Pillow's decoded image, and of our RGB(A) conversions."""
    if mode in ("1", "L"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4  # "I", "F", and every multi-band or palette mode (Pillow keeps 4 bytes/pixel)


def _read_pillow(name: str, data: bytes, max_pixels: int, max_bytes: int) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, before decoding
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_size(name, (im.height, im.width, len(im.getbands())), max_pixels)
            _check_size(name, (im.height, im.width), max_pixels, _pillow_itemsize(im.mode),
                        max_bytes)
            im.load()
            mode = im.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if "A" in im.getbands() or mode == "P" else "RGB")
            elif mode == "LA":
                im = im.convert("L")
            array = np.asarray(im)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{name}: not a readable PNG/JPEG ({exc}).") from None
    if array.dtype == np.int32:  # Pillow's "I" mode for 16-bit PNG
        array = array.astype(np.uint16)
    if array.ndim == 2:
        return _finish(name, array[None, None], "YX")
    if array.shape[2] in (2, 4):
        array = array[..., :-1]  # drop alpha
    if array.shape[2] > 1 and all(np.array_equal(array[..., 0], array[..., i])
                                  for i in range(1, array.shape[2])):
        return _finish(name, array[None, None, ..., 0], "YXS")
    return _finish(name, np.moveaxis(array, -1, 0)[None], "YXS", ["red", "green", "blue"])


def _npy_header(name: str, data: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, offset of the data) from a .npy header."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ImageReadError(f"{name}: .npy format version {version} is not supported.")
    shape, fortran, dtype = read_header(buf)
    return tuple(shape), fortran, np.dtype(dtype), buf.tell()


def _read_npy(name: str, data: bytes, max_pixels: int, max_bytes: int) -> ImageData:
    try:
        shape, _fortran, dtype, offset = _npy_header(name, data)
        dtype = _check_dtype(name, dtype)
        _check_size(name, shape, max_pixels, dtype.itemsize, max_bytes)
        n = 1
        for d in shape:
            n *= int(d)
        if len(data) - offset < n * dtype.itemsize:
            raise ImageReadError(f"{name}: the .npy file is truncated (the header declares "
                                 f"{human_bytes(n * dtype.itemsize)} of data, it holds "
                                 f"{human_bytes(len(data) - offset)}).")
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ImageReadError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise ImageReadError(f"{name}: not a readable .npy array ({exc}).") from None
    if array.ndim == 2:
        axes = "YX"
    elif array.ndim == 3:
        axes = "YXC" if array.shape[2] <= 4 else ("CYX" if array.shape[0] <= 8 else "ZYX")
    elif array.ndim == 4:
        axes = "ZCYX"
    else:
        raise ImageReadError(f"{name}: a .npy image needs 2 to 4 dimensions, not {array.ndim}.")
    return _finish(name, _to_zcyx(name, array, axes), axes)


READERS = {".tif": _read_tiff, ".tiff": _read_tiff, ".png": _read_pillow, ".jpg": _read_pillow,
           ".jpeg": _read_pillow, ".npy": _read_npy}


def read_image_bytes(name: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                     max_bytes: int = DEFAULT_MAX_BYTES) -> ImageData:
    """Decode `data` (the content of file `name`) into an ImageData, or raise ImageReadError."""
    suffix = _suffix(name)
    reader = READERS.get(suffix)
    if reader is None:
        raise ImageReadError(f"{name}: {suffix or 'no extension'} is not a supported image "
                             f"type ({', '.join(sorted(READERS))}).")
    if not data:
        raise ImageReadError(f"{name}: the file is empty.")
    return reader(name, data, max_pixels, max_bytes)


def declared_size(name: str, data: bytes) -> Declared | None:
    """The decoded size that the header of image file `name` declares, without decoding it;
    None when the header cannot be read (the reader then says why) or the type is unknown."""
    suffix = _suffix(name)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                if not tif.series:
                    return None
                shape, dtype = tuple(tif.series[0].shape), np.dtype(tif.series[0].dtype)
            itemsize = dtype.itemsize
        elif suffix in (".png", ".jpg", ".jpeg"):
            from PIL import Image
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(io.BytesIO(data)) as im:
                shape, dtype = (im.height, im.width), np.dtype(np.uint8)
                itemsize = _pillow_itemsize(im.mode)
        elif suffix == ".npy":
            shape, _f, dtype, _o = _npy_header(name, data)
            itemsize = dtype.itemsize
        else:
            return None
    except Exception:  # noqa: BLE001 - any unreadable header: the reader reports it
        return None
    n = 1
    for d in shape:
        n *= max(0, int(d))
    return Declared(tuple(int(d) for d in shape), dtype, n * itemsize)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> ImageData:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path.name}: cannot read the file ({exc.strerror}).") from None
    return read_image_bytes(path.name, data, max_pixels, max_bytes)


def read_labels_bytes(name: str, data: bytes, shape_yx: tuple[int, int],
                      max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an instance label image (uint8/16/32, or a binary mask) for an image of `shape_yx`.

    Binary masks (values 0/1 or 0/255) become connected-component instance labels.
    Returns a 2-D (Y, X) uint16 or uint32 array."""
    from skimage.measure import label as connected_components

    img = read_image_bytes(name, data, max_pixels, max_bytes)
    if img.pixels.shape[0] != 1 or img.pixels.shape[1] != 1:
        raise ImageReadError(f"{name}: a label image must be a single 2-D plane, got Z,C = "
                             f"{img.pixels.shape[:2]}.")
    labels = img.pixels[0, 0]
    if tuple(labels.shape) != tuple(shape_yx):
        raise ImageReadError(f"{name}: the label image is {labels.shape[0]}x{labels.shape[1]} "
                             f"but the image is {shape_yx[0]}x{shape_yx[1]}.")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.array_equal(labels, np.round(labels)):
            raise ImageReadError(f"{name}: label images must hold whole numbers.")
    if labels.min() < 0:
        raise ImageReadError(f"{name}: label images cannot hold negative values.")
    values = np.unique(labels)
    if len(values) <= 2 and values.max(initial=0) in (1, 255) and not np.issubdtype(
            labels.dtype, np.uint16):
        labels = connected_components(labels > 0)
    top = int(labels.max(initial=0))
    return labels.astype(np.uint16 if top <= 65535 else np.uint32)
