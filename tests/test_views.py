"""Merged views of versions: chains, merges, and what reading them costs."""

import pytest

from clearml_data.api import default_service
from clearml_data.errors import CatalogError
from clearml_data.service import Service
from clearml_data.testing import write_tree


def _version(svc: Service, tmp_path, name: str, files: dict, parents=(), remove=()) -> str:
    row = svc.create(name, "views", parents=parents)
    if files:
        src = write_tree(tmp_path / f"src-{row.id}", files)
        svc.add_files(row.id, src)
    for pattern in remove:
        svc.remove_files(row.id, pattern)
    svc.finalize(row.id, auto_upload=True)
    return row.id


def test_chain_view_applies_every_level_in_order(tmp_path):
    svc = default_service()
    ids = [_version(svc, tmp_path, "c", {"base.txt": "0", "gone.txt": "x", "keep.txt": "k"})]
    for i in range(1, 12):
        ids.append(
            _version(
                svc,
                tmp_path,
                "c",
                {"base.txt": str(i), f"f{i}.txt": str(i)},
                parents=[ids[-1]],
                remove=["gone.txt"] if i == 5 else (),
            )
        )
    svc._views.clear()
    view = svc.view(svc.resolve_id(ids[-1]))
    assert view["base.txt"][2] == ids[-1]
    assert view["keep.txt"][2] == ids[0]
    assert "gone.txt" not in view
    assert sorted(view) == sorted(["base.txt", "keep.txt"] + [f"f{i}.txt" for i in range(1, 12)])
    assert {p: view[p][2] for p in ("f3.txt", "f11.txt")} == {"f3.txt": ids[3], "f11.txt": ids[11]}
    # an ancestor's own view is still its own, not the descendant's
    assert "f6.txt" not in svc.view(svc.resolve_id(ids[5]))
    assert "gone.txt" in svc.view(svc.resolve_id(ids[4]))


def test_chain_reads_each_change_set_once(tmp_path, monkeypatch):
    svc = default_service()
    ids = [_version(svc, tmp_path, "c", {"a": "0"})]
    for i in range(1, 30):
        ids.append(_version(svc, tmp_path, "c", {f"f{i}": str(i)}, parents=[ids[-1]]))
    reads: list[str] = []
    original = svc.catalog.change_tuples
    monkeypatch.setattr(svc.catalog, "change_tuples", lambda i: reads.append(i) or original(i))
    svc._views.clear()
    assert len(svc.view(svc.resolve_id(ids[-1]))) == 30
    assert sorted(reads) == sorted(ids)
    reads.clear()
    child = _version(svc, tmp_path, "c", {"new": "n"}, parents=[ids[-1]])
    reads.clear()
    svc.view(svc.resolve_id(child))  # the parent's view is remembered: only the child's rows are read
    assert reads == [child]


def test_merge_of_parents_later_parent_wins(tmp_path):
    svc = default_service()
    a = _version(svc, tmp_path, "a", {"same.txt": "from a", "a.txt": "a"})
    b = _version(svc, tmp_path, "b", {"same.txt": "from b", "b.txt": "b"})
    b2 = _version(svc, tmp_path, "b", {"b2.txt": "b2"}, parents=[b])
    merged = _version(svc, tmp_path, "m", {"m.txt": "m"}, parents=[a, b2])
    svc._views.clear()
    view = svc.view(svc.resolve_id(merged))
    assert {p: v[2] for p, v in view.items()} == {
        "same.txt": b,
        "a.txt": a,
        "b.txt": b,
        "b2.txt": b2,
        "m.txt": merged,
    }


def test_parent_cycle_in_a_crafted_catalog_is_an_error(tmp_path):
    svc = default_service()
    a = _version(svc, tmp_path, "a", {"x": "1"})
    b = _version(svc, tmp_path, "a", {"y": "2"}, parents=[a])
    svc.catalog.set_parents(a, [b])
    svc._views.clear()
    with pytest.raises(CatalogError, match="parent cycle"):
        svc.view(svc.resolve_id(b))
