"""Metadata of a version: named JSON values or pandas DataFrames, stored in the catalog.

Values are stored as JSON (a DataFrame in pandas' "table" orientation), never pickled, so
reading a catalog of unknown origin cannot run code.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ..catalog import DatasetRow
from ..errors import UsageError
from .drafts import update
from .lookup import resolve_id
from .workspace import Workspace

#: metadata values are stored as JSON in the catalog; this marks a pandas DataFrame
_FRAME = "pandas.DataFrame"
METADATA_MAX_BYTES = 10 * 1024 * 1024
#: metadata names clearml-data keeps for itself (the reports: service.reports)
RESERVED_PREFIX = "clearml_data:"


def set_metadata(ws: Workspace, dataset_id: str, value: Any, metadata_name: str = "metadata") -> None:
    """Store a JSON-able value or a pandas DataFrame under a name (never pickled)."""
    if not isinstance(metadata_name, str) or not metadata_name.strip():
        raise UsageError("metadata_name must be a non-empty string")
    if metadata_name.startswith(RESERVED_PREFIX):
        raise UsageError(f"metadata names starting with {RESERVED_PREFIX!r} are kept for clearml-data")
    record = _encode(value)
    if len(json.dumps(record)) > METADATA_MAX_BYTES:
        raise UsageError(
            f"metadata {metadata_name!r} is larger than {METADATA_MAX_BYTES // 2**20} MiB",
            hint="store big tables as files in the dataset instead",
        )
    with ws.catalog.write():  # read and written at once: a concurrent name is never lost
        row = resolve_id(ws, dataset_id)
        metadata = dict(row.metadata)
        metadata[metadata_name] = record
        update(ws, row.id, metadata=metadata)


def get_metadata(row: DatasetRow, metadata_name: str = "metadata") -> Any:
    """The value stored under ``metadata_name``, or None."""
    record = row.metadata.get(metadata_name)
    return None if record is None else _decode(record)


def _encode(value: Any) -> dict:
    if type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame":
        return {"type": _FRAME, "value": json.loads(value.to_json(orient="table"))}
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"metadata must be JSON-serialisable or a pandas DataFrame: {exc}",
            hint="convert it to dicts, lists, strings and numbers first",
        ) from None
    return {"type": "json", "value": json.loads(text)}


def _decode(record: dict) -> Any:
    if record.get("type") == _FRAME:
        try:
            import pandas
        except ImportError:
            raise UsageError(
                "this metadata is a pandas DataFrame and pandas is not installed", hint="pip install pandas"
            ) from None
        return pandas.read_json(io.StringIO(json.dumps(record["value"])), orient="table")
    return record.get("value")
