import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearml_data.errors import UnsafePathError
from clearml_data.paths import check_relpath, matches, normalize_relpath, safe_join

HOSTILE = [
    "",
    "/etc/passwd",
    "../x",
    "a/../../x",
    "a/..",
    "./a",
    "a//b",
    "a/./b",
    "C:x",
    "c:/windows",
    "a\x00b",
    "a\nb",
    "a\x1bb",
    "a\\..\\b",
    "\\\\server\\share",
    "a/" + "x" * 256,
    "..",
    ".",
    "/",
    "a/",
    "a\x7fb",
    "\u202eevil.txt",
    "CON",
    "a/nul",
    "trailing.",
    "trailing ",
    "...",
    "a\x85b",
    "caf\udce9.txt",
    "a\u2028b",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_relpaths_are_refused(path, tmp_path):
    with pytest.raises(UnsafePathError):
        check_relpath(path)
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, path)


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "a/b/c.txt",
        "über/ñ.jpg",
        "a b/c d",
        "x" * 255,
        "a..b",
        "con.txt",
        "console",
        ".hidden",
        "é" * 127,
        "日本/ファイル.png",
    ],
)
def test_clean_relpaths_join_inside(path, tmp_path):
    full = safe_join(tmp_path, path)
    assert full.startswith(str(tmp_path) + os.sep)


@given(st.text(min_size=1, max_size=40))
def test_safe_join_never_leaves_the_folder(text):
    root = "/srv/root"
    try:
        full = safe_join(root, text)
    except UnsafePathError:
        return
    assert os.path.commonpath([root, full]) == root and full != root


@pytest.mark.parametrize(
    "raw,expected",
    [("", ""), (".", ""), ("/", ""), ("a/b/", "a/b"), ("./a//b", "a/b"), ("/abs", "abs"), ("//a/b/", "a/b")],
)
def test_normalize_dataset_folder(raw, expected):
    # a leading "/" is the dataset root, as in ClearML
    assert normalize_relpath(raw) == expected


@pytest.mark.parametrize("raw", ["../a", "/../a", "/a/../../b", "a/../b", "a\\b", "C:/x"])
def test_normalize_refuses(raw):
    with pytest.raises(UnsafePathError):
        normalize_relpath(raw)


@pytest.mark.parametrize(
    "path,pattern,recursive,expected",
    [
        ("a.jpg", "*.jpg", True, True),
        ("x/a.jpg", "a.jpg", True, True),  # basename match at any depth (ClearML)
        ("x/a.jpg", "a.jpg", False, False),
        ("data/jsons/a.json", "data/jsons/", True, True),  # a trailing slash names the folder
        ("data/jsons/a.json", "data/jsons", True, True),
        ("data/jsons/sub/a.json", "data/jsons", False, False),
        ("data/jsons/a.json", "data/jsons", False, True),
        ("data/jsonsx/a.json", "data/jsons", True, False),
        ("data/jsons/a.json", "data/*/a.json", True, True),
        ("a/b.txt", "*.jpg", True, False),
    ],
)
def test_matches(path, pattern, recursive, expected):
    assert matches(path, pattern, recursive) is expected
