"""Reports of a version: the tables, plots, images, media and text ``Dataset.get_logger()`` takes.

They are kept with the version as one reserved metadata entry (:data:`RESERVED`), a JSON list
of records shaped for a viewer to draw without reading anything else:

- ``{"kind": "table", "title", "series", "iteration", "columns": [...], "index": [...] | None,
  "rows": [[...], ...]}`` (or ``"url"`` for a table left at a URL);
- ``{"kind": "scalar", "title", "series", "points": [[iteration, value], ...]}``, one record
  per (title, series), its points in the order reported;
- ``{"kind": "histogram", "title", "series", "iteration", "values": [...], "labels",
  "xlabels", "xaxis", "yaxis", "mode"}``;
- ``{"kind": "text", "text", "level"}``;
- ``{"kind": "image" | "media", "title", "series", "iteration", "media": {"key", "sha256",
  "size", "mime", "name"}}`` (or ``"url"``): the bytes (PNG or JPEG for images) are an object
  of the version's storage at ``reports/<id>/<sha256><ext>``, outside the content-addressed
  objects that ``gc`` collects.

Why metadata and not a table of its own: metadata is written into the version's manifest
when it is finalized, so reports made before ``finalize`` come back with a catalog rebuilt
from storage, at no cost to the catalog's schema. Reports made after ``finalize`` are kept in
the catalog only (a manifest never changes). Every record also carries ``time`` (seconds
since the epoch).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import mimetypes
import os
import struct
import time
import zlib
from typing import Any

from ..catalog import DatasetRow
from ..errors import ClearMLDataError, IntegrityError, UsageError
from .drafts import update
from .lookup import resolve_id
from .metadata import METADATA_MAX_BYTES, RESERVED_PREFIX
from .workspace import Workspace, storage_call

log = logging.getLogger(__name__)

#: the metadata name the reports are kept under (never shown as user metadata)
RESERVED = RESERVED_PREFIX + "reports"
KINDS = ("table", "scalar", "histogram", "text", "image", "media")
#: bytes of one image or media file kept with a version
MEDIA_MAX_BYTES = 64 * 1024 * 1024
_IMAGE_MIME = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/svg+xml"}


# -- reading and writing the list ---------------------------------------------------------
def reports(row: DatasetRow) -> list[dict]:
    record = row.metadata.get(RESERVED)
    value = record.get("value") if isinstance(record, dict) else None
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _save(ws: Workspace, row: DatasetRow, items: list[dict]) -> None:
    record = {"type": "json", "value": items}
    if len(json.dumps(record)) > METADATA_MAX_BYTES:
        raise UsageError(
            f"the reports of dataset {row.id} would pass {METADATA_MAX_BYTES // 2**20} MiB",
            hint="report big tables as files of the dataset instead",
        )
    metadata = dict(row.metadata)
    metadata[RESERVED] = record
    update(ws, row.id, metadata=metadata)


def add_report(ws: Workspace, dataset_id: str, report: dict) -> dict:
    """Append one record (a scalar joins its series' record); returns the record kept.

    Read and written in one catalog write, so that processes reporting to one version at
    once each keep every record."""
    with ws.catalog.write():
        return _add_report(ws, dataset_id, report)


def _add_report(ws: Workspace, dataset_id: str, report: dict) -> dict:
    row = resolve_id(ws, dataset_id)
    items = reports(row)
    report = {**report, "time": time.time()}
    if report["kind"] == "scalar":
        for item in items:
            if item.get("kind") == "scalar" and (item["title"], item["series"]) == (
                report["title"],
                report["series"],
            ):
                item["points"].extend(report["points"])
                item["time"] = report["time"]
                _save(ws, row, items)
                return item
    items.append(report)
    _save(ws, row, items)
    return report


def report_media(
    ws: Workspace,
    dataset_id: str,
    kind: str,
    title: str,
    series: str,
    iteration: int | None,
    data: bytes,
    mime: str,
    name: str,
) -> dict:
    """Store ``data`` with the version (in its storage) and record it."""
    if len(data) > MEDIA_MAX_BYTES:
        raise UsageError(f"{name or kind} is larger than {MEDIA_MAX_BYTES // 2**20} MiB")
    row = resolve_id(ws, dataset_id)
    digest = hashlib.sha256(data).hexdigest()
    ext = mimetypes.guess_extension(mime) or os.path.splitext(name)[1] or ""
    key = f"reports/{row.id}/{digest}{ext}"
    driver = ws.driver(row.storage)
    try:
        storage_call(row.storage, key, driver.put_bytes, data, key, overwrite=False)
    except FileExistsError:
        pass  # the same bytes (the key is their digest), reported before
    media = {"key": key, "sha256": digest, "size": len(data), "mime": mime, "name": name}
    return add_report(
        ws,
        dataset_id,
        {"kind": kind, "title": title, "series": series, "iteration": iteration, "media": media},
    )


def media_bytes(ws: Workspace, row: DatasetRow, report: dict) -> bytes:
    """The bytes of an image or media record, checked against their digest."""
    media = report.get("media")
    if not isinstance(media, dict):
        raise UsageError("this report holds no stored image or media", hint="its 'url' names where it is")
    key = str(media["key"])
    driver = ws.driver(row.storage)
    data = storage_call(row.storage, key, driver.get_bytes, key)
    if hashlib.sha256(data).hexdigest() != media["sha256"]:
        raise IntegrityError(f"report file {key} in {row.storage} is damaged (its hash differs)")
    return data


def remove_media(ws: Workspace, row: DatasetRow) -> int:
    """After a version left the catalog: remove the image and media files of its reports
    (every object under ``reports/<id>/``, including any whose record a concurrent report
    overwrote). Best effort, as their bytes are not referenced any more: a failure is logged.
    Returns how many were removed."""
    prefix = f"reports/{row.id}/"
    driver = ws.driver(row.storage)
    removed = 0
    try:
        for info in list(storage_call(row.storage, prefix, driver.list, prefix)):
            try:
                storage_call(row.storage, info.key, driver.delete, info.key)
                removed += 1
            except FileNotFoundError:
                pass
    except (ClearMLDataError, OSError) as exc:
        log.warning("could not remove the report files of %s from its storage: %s", row.id, exc)
    return removed


# -- one report of each kind ---------------------------------------------------------------
def _label(value: Any, what: str) -> str:
    if value is None:
        raise UsageError(f"a report needs a {what}")
    return str(value)


def _iteration(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"iteration must be a whole number, not {value!r}") from None


def report(ws: Workspace, dataset_id: str, kind: str, **fields: Any) -> dict:
    """Record one report of ``kind`` ("table", "scalar", ...) from the logger's arguments."""
    title = fields.get("title")
    series = fields.get("series")
    iteration = _iteration(fields.get("iteration"))
    if kind == "text":
        level = fields.get("level", logging.INFO)
        name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
        return add_report(ws, dataset_id, {"kind": "text", "text": str(fields.get("msg", "")), "level": name})
    title, series = _label(title, "title"), _label(series, "series")
    base = {"title": title, "series": series}
    if kind == "table":
        table = table_record(fields.get("table_plot"), fields.get("csv"), fields.get("url"))
        return add_report(ws, dataset_id, {"kind": "table", **base, "iteration": iteration, **table})
    if kind == "scalar":
        value = plain(fields.get("value"))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"report_scalar needs a number, not {fields.get('value')!r}")
        return add_report(ws, dataset_id, {"kind": "scalar", **base, "points": [[iteration, value]]})
    if kind == "histogram":
        values = plain(fields.get("values"))
        if not isinstance(values, list):
            raise UsageError("report_histogram needs values: a list of numbers (or of lists)")
        record = {"kind": "histogram", **base, "iteration": iteration, "values": values}
        for name in ("labels", "xlabels", "xaxis", "yaxis", "mode"):
            record[name] = plain(fields.get(name))
        return add_report(ws, dataset_id, record)
    if kind in ("image", "media"):
        url = fields.get("url")
        if url is not None:
            return add_report(ws, dataset_id, {"kind": kind, **base, "iteration": iteration, "url": str(url)})
        if kind == "image":
            image = fields.get("image")
            data, mime, name = image_bytes(
                fields.get("matrix") if image is None else image, fields.get("local_path")
            )
        else:
            data, mime, name = media_input(
                fields.get("local_path"), fields.get("stream"), fields.get("file_extension")
            )
        return report_media(ws, dataset_id, kind, title, series, iteration, data, mime, name)
    raise UsageError(f"no report kind {kind!r} (one of {', '.join(KINDS)})")


def media_input(local_path: Any, stream: Any, file_extension: str | None) -> tuple[bytes, str, str]:
    """(bytes, mime, name) of a media file or stream."""
    if (local_path is None) == (stream is None):
        raise UsageError("report_media takes one of local_path, stream or url")
    if local_path is not None:
        return file_bytes(local_path)
    data = stream.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    ext = file_extension or ""
    if ext and not ext.startswith("."):
        ext = "." + ext
    mime = mimetypes.guess_type(f"x{ext}")[0] or "application/octet-stream"
    return bytes(data), mime, f"stream{ext}"


# -- turning what users pass into records -------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars and arrays, tuples and NaN/inf (-> None) made plain."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return plain(value.item())
    return str(value)


def _is_frame(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def table_record(
    table_plot: Any = None, csv_path: str | os.PathLike | None = None, url: str | None = None
) -> dict:
    """columns / index / rows of a DataFrame, a list of rows (the first one the header), or a
    CSV file; or the URL of one."""
    given = [x is not None for x in (table_plot, csv_path, url)]
    if sum(given) != 1:
        raise UsageError("report_table takes one of table_plot, csv or url")
    if url is not None:
        return {"url": str(url)}
    if csv_path is not None:
        try:
            with open(os.fspath(csv_path), newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except OSError as exc:
            raise UsageError(f"cannot read the CSV file {csv_path}: {exc.strerror or exc}") from None
        return {"columns": rows[0] if rows else [], "index": None, "rows": rows[1:]}
    if _is_frame(table_plot):
        split = json.loads(table_plot.to_json(orient="split", date_format="iso"))
        return {
            "columns": [str(c) for c in split.get("columns", [])],
            "index": split.get("index"),
            "rows": split.get("data", []),
        }
    if isinstance(table_plot, (str, os.PathLike)):
        return table_record(csv_path=table_plot)
    try:
        rows = [list(plain(r)) for r in table_plot]
    except TypeError:
        raise UsageError("table_plot must be a pandas DataFrame, a list of rows or a CSV path") from None
    return {"columns": [str(c) for c in rows[0]] if rows else [], "index": None, "rows": rows[1:]}


def image_bytes(image: Any = None, local_path: str | os.PathLike | None = None) -> tuple[bytes, str, str]:
    """(bytes, mime, name) of an image given as a file, a PIL image or a numpy array (PNG)."""
    if local_path is not None:
        data, mime, name = file_bytes(local_path)
        if mime in _IMAGE_MIME:
            return data, mime, name
        try:
            from PIL import Image
        except ImportError:
            raise UsageError(
                f"{name} is not a PNG, JPEG, GIF, WebP or BMP image", hint="pip install pillow to convert it"
            ) from None
        return _pil_png(Image.open(io.BytesIO(data))), "image/png", name
    if image is None:
        raise UsageError("report_image takes one of local_path, image, matrix or url")
    if type(image).__module__.startswith("PIL"):
        return _pil_png(image), "image/png", ""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise UsageError("image must be a numpy array or a PIL image")
    return png(image), "image/png", ""


def file_bytes(path: str | os.PathLike) -> tuple[bytes, str, str]:
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MEDIA_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return data, mime, os.path.basename(path)


def _pil_png(img: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def png(array: Any) -> bytes:
    """A PNG of an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array: integers as 0-255, floats
    as 0-1 (ClearML's convention), clipped. Needs numpy, which an array implies."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise UsageError(f"an image array is (height, width[, 1, 3 or 4]), not {a.shape}")
    if a.dtype.kind == "f":
        a = np.nan_to_num(a) * (255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0)
    a = np.clip(a, 0, 255).astype(np.uint8)
    height, width = a.shape[:2]
    color = 0 if a.ndim == 2 else {3: 2, 4: 6}[a.shape[2]]  # grey, RGB, RGBA
    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )
