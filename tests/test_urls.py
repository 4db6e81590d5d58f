"""clearml-data:// URLs: the grammar, percent-encoding, round trips, and the errors for bad URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearml_data import Dataset
from clearml_data.errors import DatasetNotFoundError, UsageError
from clearml_data.testing import write_tree
from clearml_data.urls import DatasetURL, format_url, parse_url

ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"clearml-data://{ID}", DatasetURL(dataset_id=ID)),
        (f"clearml-data://{ID}/", DatasetURL(dataset_id=ID)),
        (f"clearml-data://{ID.upper()}/a/b.csv", DatasetURL(dataset_id=ID, path="a/b.csv")),
        # a path keeps its @, % and spaces: it is the dataset path as it is
        (f"clearml-data://{ID}/img/a@2x 50%.png", DatasetURL(dataset_id=ID, path="img/a@2x 50%.png")),
        ("clearml-data://name@1.0", DatasetURL(name="name", version="1.0")),
        ("clearml-data://p/name@latest", DatasetURL(project="p", name="name", version="latest")),
        (
            "clearml-data://team/vision/cats@2.1.0/train/0001.jpg",
            DatasetURL(project="team/vision", name="cats", version="2.1.0", path="train/0001.jpg"),
        ),
        # escapes: a / inside a name, an @ inside a project, a % in a version
        (
            "clearml-data://a%40b/x%2Fy@1%25/f",
            DatasetURL(project="a@b", name="x/y", version="1%", path="f"),
        ),
        # the path after the name@version segment may hold @ too
        ("clearml-data://n@1/a@b/c", DatasetURL(name="n", version="1", path="a@b/c")),
        # any case of the scheme
        (f"CLEARML-DATA://{ID}", DatasetURL(dataset_id=ID)),
    ],
)
def test_parse(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://bucket/x", "does not start with clearml-data://"),
        ("clearml-data://", "names no version"),
        ("clearml-data://project/name", "no segment holds <name>@<version>"),
        ("clearml-data://0123/x", "first segment is not a dataset id"),
        ("clearml-data://p/n@1@2", "more than one @"),
        ("clearml-data://@1", "its name is empty"),
        ("clearml-data://n@", "its version is empty"),
        ("clearml-data://p//n@1", "its project is empty"),
        ("clearml-data://p/n%zz@1", "not a %XX escape"),
        ("clearml-data://p/n%ff@1", "not UTF-8"),
        ("clearml-data://p/n%0A@1", "control character"),
        (f"clearml-data://{ID}/a/../b", "'.' or '..' segment"),
        (f"clearml-data://{ID}/a//b", "empty"),
    ],
)
def test_bad_urls_are_one_line_usage_errors(url, says):
    with pytest.raises(UsageError) as info:
        parse_url(url)
    text = str(info.value)
    assert says in text and "\n" not in text


def test_format_escapes_what_would_read_otherwise():
    assert format_url(dataset_id=ID.upper()) == f"clearml-data://{ID}"
    assert format_url(project="a/b", name="n", version="1.0", path="x/y.csv") == (
        "clearml-data://a/b/n@1.0/x/y.csv"
    )
    assert format_url(name="n") == "clearml-data://n@latest"
    assert format_url(project="p@q", name="x/y@z", version="1%") == "clearml-data://p%40q/x%2Fy%40z@1%25"
    # a project whose first segment reads as an id: one letter escaped, so it reads as a project
    url = format_url(project=f"{ID}/sub", name="n", version="1")
    assert not url.startswith(f"clearml-data://{ID}")
    assert parse_url(url) == DatasetURL(project=f"{ID}/sub", name="n", version="1")
    # a project with an empty or blank segment: one segment, its slashes escaped
    assert parse_url(format_url(project="a//b", name="n")).project == "a//b"
    assert parse_url(format_url(project="/a", name="n")).project == "/a"
    with pytest.raises(UsageError):
        format_url(dataset_id=ID, name="n")
    with pytest.raises(UsageError):
        format_url(dataset_id="nothex")
    with pytest.raises(UsageError):
        format_url(project="p")


# labels as the catalog takes them: not blank, no control character
labels = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), min_size=1, max_size=30
).filter(lambda s: s.strip())
path_parts = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\x7f"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
paths = st.lists(path_parts, max_size=4).map("/".join)


@given(project=st.none() | labels, name=labels, version=labels, path=paths)
def test_format_then_parse_gives_back_a_name_url(project, name, version, path):
    url = format_url(project=project, name=name, version=version, path=path)
    assert parse_url(url) == DatasetURL(project=project, name=name, version=version, path=path)
    assert str(parse_url(url)) == url


@given(dataset_id=st.text("0123456789abcdef", min_size=32, max_size=32), path=paths)
def test_format_then_parse_gives_back_an_id_url(dataset_id, path):
    url = format_url(dataset_id=dataset_id, path=path)
    assert parse_url(url) == DatasetURL(dataset_id=dataset_id, path=path)
    assert parse_url(url).reference == f"clearml-data://{dataset_id}"


def _version(tmp_path, project, name, version, files):
    src = write_tree(tmp_path / f"src-{name}-{version}", files)
    ds = Dataset.create(dataset_name=name, dataset_project=project, dataset_version=version)
    ds.add_files(str(src))
    ds.upload()
    ds.finalize()
    return ds


def test_dataset_url_round_trips_through_get(env, tmp_path):
    old = _version(tmp_path, "team/vision", "cats@home", "1.0.0", {"a.txt": "1"})
    new = _version(tmp_path, "team/vision", "cats@home", "1.1.0", {"a.txt": "2"})
    Dataset.create(
        dataset_name="cats@home", dataset_project="team/vision", dataset_version="2.0.0"
    )  # a draft
    assert old.url == f"clearml-data://{old.id}"
    assert Dataset.get(dataset_id=old.url).id == old.id
    # latest: the highest final version (the draft 2.0.0 cannot be read)
    latest = format_url(project="team/vision", name="cats@home")
    assert Dataset.get(dataset_id=latest).id == new.id
    assert (
        Dataset.get(dataset_id=format_url(project="team/vision", name="cats@home", version="1.0.0")).id
        == old.id
    )
    # no project: any project
    assert Dataset.get(dataset_id=format_url(name="cats@home", version="1.1.0")).id == new.id
    with pytest.raises(UsageError, match="names a file or folder in a version"):
        Dataset.get(dataset_id=old.url + "/a.txt")
    with pytest.raises(UsageError, match="either a clearml-data URL or project"):
        Dataset.get(dataset_id=old.url, dataset_project="team/vision")
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(dataset_id=format_url(project="team", name="cats@home"))
    with pytest.raises(UsageError, match="not a clearml-data URL"):
        Dataset.get(dataset_id="clearml-data://p/n@1@2")
