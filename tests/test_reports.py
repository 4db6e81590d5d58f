"""Dataset.get_logger(): reports kept with the version, read back through the API; and Task."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import pytest

from clearml_data import Dataset, OutOfScopeError, Task, UsageError
from clearml_data.testing import isolate, write_tree

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


@pytest.fixture
def env(tmp_path, monkeypatch):
    return isolate(tmp_path / "env", monkeypatch)


@pytest.fixture
def draft(env, tmp_path):
    write_tree(tmp_path / "src", {"a.txt": b"a", "b/c.txt": b"c"})
    ds = Dataset.create(dataset_name="reported", dataset_project="p")
    ds.add_files(str(tmp_path / "src"))
    return ds


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, raw rows) of a PNG we wrote (one IDAT)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(tag + body)
        chunks[tag] = body
        pos += 12 + length
    width, height, _depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    return width, height, color, zlib.decompress(chunks[b"IDAT"])


def test_every_report_kind_is_kept_and_read_back(draft, tmp_path):
    logger = draft.get_logger()
    frame = pd.DataFrame(
        {"fold": [1, 2, 2], "label": ["dog", "cat", "dog"], "score": [0.5, float("nan"), 1.0]}
    )
    logger.report_table(title="Raw Dataset Metadata", series="Raw Dataset Metadata", table_plot=frame)
    logger.report_table(title="rows", series="s", table_plot=[["x", "y"], [1, 2], [3, 4]])
    (tmp_path / "t.csv").write_text("h1,h2\nv1,v2\n")
    logger.report_table(title="csv", series="s", csv=str(tmp_path / "t.csv"))
    counts = frame["label"].value_counts()
    logger.report_histogram(
        title="Class distribution",
        series="Class distribution",
        values=counts,
        iteration=0,
        xlabels=counts.index.tolist(),
        yaxis="Amount of samples",
    )
    for i, v in enumerate([0.1, 0.2, 0.4]):
        logger.report_scalar(title="loss", series="train", value=v, iteration=i)
    logger.report_text("hello", print_console=False)
    image = np.zeros((4, 3, 3), dtype=float)
    image[0, 0] = [1.0, 0.5, 0.0]
    logger.report_image(title="sample", series="spectrogram", image=image)
    (tmp_path / "sound.wav").write_bytes(b"RIFF....WAVE")
    logger.report_media(title="sample", series="original_audio", local_path=tmp_path / "sound.wav")
    logger.report_media(title="streamed", series="s", stream=io.BytesIO(b"abc"), file_extension="txt")

    ds = Dataset.get(dataset_id=draft.id)
    kinds = [r["kind"] for r in ds.get_reports()]
    assert kinds == ["table", "table", "table", "histogram", "scalar", "text", "image", "media", "media"]
    table = ds.get_reports(kind="table")[0]
    assert table["columns"] == ["fold", "label", "score"]
    assert table["rows"] == [[1, "dog", 0.5], [2, "cat", None], [2, "dog", 1.0]]
    assert ds.get_reports(title="rows")[0]["rows"] == [[1, 2], [3, 4]]
    assert ds.get_reports(title="csv")[0]["columns"] == ["h1", "h2"]
    hist = ds.get_reports(kind="histogram")[0]
    assert (
        hist["values"] == [2, 1]
        and hist["xlabels"] == ["dog", "cat"]
        and hist["yaxis"] == "Amount of samples"
    )
    assert ds.get_reports(kind="scalar")[0]["points"] == [[0, 0.1], [1, 0.2], [2, 0.4]]
    assert ds.get_reports(kind="text")[0]["text"] == "hello"
    img = ds.get_reports(kind="image")[0]
    assert img["media"]["mime"] == "image/png"
    width, height, color, raw = _png_pixels(ds.get_report_file(img))
    assert (width, height, color) == (3, 4, 2)
    assert raw[:4] == b"\x00" + bytes([255, 127, 0])  # filter byte, then the first pixel
    audio = ds.get_reports(kind="media")[0]
    assert ds.get_report_file(audio) == b"RIFF....WAVE" and audio["media"]["mime"] in (
        "audio/x-wav",
        "audio/wav",
    )
    assert ds.get_report_file(ds.get_reports(title="streamed")[0]) == b"abc"
    assert "clearml_data:reports" not in ds.metadata  # never shown as user metadata


def test_reports_survive_finalize_and_a_catalog_rebuild(draft, env):
    draft.get_logger().report_scalar("acc", "val", 0.9, 1)
    draft.get_logger().report_image("img", "s", image=np.full((2, 2), 200, dtype=np.uint8))
    draft.finalize(auto_upload=True)
    env.catalog.unlink()
    Dataset.rebuild_catalog(str(env.storage))
    back = Dataset.get(dataset_id=draft.id)
    assert back.get_reports(kind="scalar")[0]["points"] == [[1, 0.9]]
    _w, _h, color, raw = _png_pixels(back.get_report_file(back.get_reports(kind="image")[0]))
    assert color == 0 and raw == b"\x00\xc8\xc8\x00\xc8\xc8"


def test_deleting_a_version_removes_its_report_files(draft, env, tmp_path):
    draft.get_logger().report_media("m", "s", stream=io.BytesIO(b"mine"), file_extension=".bin")
    draft.finalize(auto_upload=True)
    other = Dataset.create(dataset_name="other", dataset_project="p")
    other.get_logger().report_media("m", "s", stream=io.BytesIO(b"theirs"), file_extension=".bin")
    reports = env.storage / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted([draft.id, other.id])
    Dataset.delete(dataset_id=draft.id)
    assert [p.name for p in reports.iterdir() if any(p.iterdir())] == [other.id]
    assert other.get_report_file(other.get_reports(kind="media")[0]) == b"theirs"


def test_processes_reporting_to_one_version_at_once_keep_every_record(draft):
    """Each report (and each metadata name) is read and written in one catalog write."""
    script = (
        "import sys\n"
        "from clearml_data import Dataset\n"
        "ds = Dataset.get(dataset_id=sys.argv[1])\n"
        "for i in range(25):\n"
        "    ds.get_logger().report_text(f'{sys.argv[2]} {i}')\n"
        "    ds.set_metadata({'i': i}, metadata_name=f'{sys.argv[2]}-{i}')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, draft.id, who]) for who in ("one", "two")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    back = Dataset.get(dataset_id=draft.id)
    texts = sorted(r["text"] for r in back.get_reports(kind="text"))
    assert texts == sorted(f"{who} {i}" for who in ("one", "two") for i in range(25))
    assert sorted(back.metadata) == sorted(f"{who}-{i}" for who in ("one", "two") for i in range(25))


def test_a_damaged_report_file_is_detected(draft, env):
    draft.get_logger().report_media("m", "s", stream=io.BytesIO(b"original"), file_extension=".bin")
    report = draft.get_reports(kind="media")[0]
    (env.storage / report["media"]["key"]).write_bytes(b"tampered")
    from clearml_data import IntegrityError

    with pytest.raises(IntegrityError):
        draft.get_report_file(report)


def test_bad_reports_are_usage_errors(draft):
    logger = draft.get_logger()
    with pytest.raises(UsageError, match="one of table_plot, csv or url"):
        logger.report_table("t", "s")
    with pytest.raises(UsageError, match="number"):
        logger.report_scalar("t", "s", "high", 0)
    with pytest.raises(UsageError, match="image array"):
        logger.report_image("t", "s", image=np.zeros((2, 2, 5)))
    with pytest.raises(UsageError, match="kept for clearml-data"):
        draft.set_metadata({}, metadata_name="clearml_data:reports")
    with pytest.raises(AttributeError, match="report_plotly is not provided by clearml-data"):
        logger.report_plotly("t", "s", figure={})
    assert draft.get_reports() == []


def test_task_is_out_of_scope_in_one_line(draft):
    for call in (
        lambda: Task.init(project_name="p", task_name="t"),
        lambda: Task.get_task(task_id="x"),
        lambda: Task.current_task,  # reaching the attribute is enough
        lambda: Task(project_name="p"),
        lambda: draft._task.upload_artifact(name="metadata", artifact_object={}),
        lambda: draft._task.id,
    ):
        with pytest.raises(OutOfScopeError) as info:
            call()
        text = str(info.value)
        assert "\n" not in text and "out of scope for clearml-data" in text and "set_metadata" in text
        assert isinstance(info.value, NotImplementedError)


def test_create_with_the_current_task_is_out_of_scope_in_one_line():
    with pytest.raises(OutOfScopeError) as info:
        Dataset.create(dataset_project="p", dataset_name="d", use_current_task=True)
    assert "use_current_task" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, NotImplementedError)
    assert Dataset.list_datasets(dataset_project="p", only_completed=False) == []
