"""Bit rot: damage planted in storage and in the local cache; `verify` names exactly the
damaged files (dataset paths), in fast mode what sizes and stats can show, in full mode all;
and `verify --repair` stores damaged storage content again from the cache or a folder."""

import hashlib
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data.api import default_service
from clearml_data.testing import isolate, read_tree, write_tree

from figures import reliability_count, report_figures

FILES_PER_ROUND = 60
CHUNK_MB = 0.02  # ~20 KB packs; files from that size up are objects of their own


def rewrite(path, change, keep_mtime=True):
    """Change a file in place as its owner could, then put its mode (and mtime) back."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        change(fh)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    # a write moves the mtime (by at least a coarse clock's tick); rot on the medium does not
    mtime = st.st_mtime_ns if keep_mtime else st.st_mtime_ns + 1_000_000
    os.utime(path, ns=(st.st_atime_ns, mtime))


def flip_bit(path, offset, rng, keep_mtime=True):
    def change(fh):
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ (1 << rng.randrange(8))]))

    rewrite(path, change, keep_mtime)


def truncate(path, size, keep_mtime=True):
    rewrite(path, lambda fh: fh.truncate(size), keep_mtime)


def garbage(path, rng, keep_mtime=True):
    size = os.stat(path).st_size
    rewrite(path, lambda fh: fh.write(rng.randbytes(size)), keep_mtime)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damaged_members(path, members):
    """Ground truth: the members (hash, offset, length) whose bytes no longer hash right."""
    data = Path(path).read_bytes() if os.path.exists(path) else None
    return {
        h for h, off, n in members if data is None or hashlib.sha256(data[off : off + n]).hexdigest() != h
    }


def one_round(tmp_path, monkeypatch, cli, rng):
    env = isolate(tmp_path, monkeypatch)
    files = {f"d{i % 7}/f{i}.bin": rng.randbytes(rng.randrange(1, 40_000)) for i in range(FILES_PER_ROUND)}
    ds = Dataset.create(dataset_name="rot", dataset_project="p")
    ds.add_files(write_tree(tmp_path / "src", files))
    ds.upload(chunk_size=CHUNK_MB)
    ds.finalize()
    ds.get_local_copy()
    copy_view = ds.get_local_copy(use_soft_links=False)
    service = default_service()
    path_of = {hashlib.sha256(b).hexdigest(): p for p, b in files.items()}
    locations = service.catalog.locate_objects(path_of)
    members: dict[str, list[tuple[str, int, int]]] = {}
    for h, locs in locations.items():
        members.setdefault(locs[0].key, []).append((h, locs[0].offset, locs[0].length))

    # -- storage: k bit flips, one truncation, one deletion, one same-size garbage (mtime kept)
    keys = sorted(members)
    rng.shuffle(keys)
    flips, (cut, gone, junk) = keys[:3], keys[3:6]
    for key in flips:
        flip_bit(env.storage / key, rng.randrange(os.stat(env.storage / key).st_size), rng)
    truncate(env.storage / cut, rng.randrange(os.stat(env.storage / cut).st_size))
    os.unlink(env.storage / gone)
    garbage(env.storage / junk, rng)
    storage_bad = set()
    for key in (*flips, cut, gone, junk):
        storage_bad |= damaged_members(env.storage / key, members[key])
    size_visible = damaged_members(env.storage / cut, members[cut]) | {h for h, _o, _n in members[gone]}

    # -- cache, on content whose storage is intact: edits through a link (the mtime moves),
    # and rot the stat cannot see (the mtime stays)
    safe = sorted(h for key in keys[6:] for h, _o, _n in members[key])
    rng.shuffle(safe)
    flipped, cut_short, junk_copy, rotten, deleted = safe[:5]
    obj = service.cache.object_file
    flip_bit(obj(flipped), rng.randrange(len(files[path_of[flipped]])), rng, keep_mtime=False)
    truncate(obj(cut_short), len(files[path_of[cut_short]]) // 2, keep_mtime=False)
    garbage(os.path.join(copy_view, path_of[junk_copy]), rng, keep_mtime=False)
    flip_bit(obj(rotten), rng.randrange(len(files[path_of[rotten]])), rng)
    os.unlink(obj(deleted))  # not damage: the next get fetches it
    cache_seen = {flipped, cut_short, junk_copy}

    fast = cli("verify", "--id", ds.id, "--filesize", "--json")
    full = cli("verify", "--id", ds.id, "--json")  # after fast mode dropped what it found
    named_fast = {p["path"] for p in fast.json["data"]["problems"]}
    named_full = {p["path"] for p in full.json["data"]["problems"]}
    expect_fast = {path_of[h] for h in size_visible | cache_seen}
    expect_full = {path_of[h] for h in storage_bad | {rotten}}
    planted = expect_full | expect_fast
    assert fast.code == 1 and full.code == 1
    assert named_fast == expect_fast
    assert named_full == expect_full
    # the cache is whole again, and serves the right bytes
    assert read_tree(ds.get_local_copy()) == files
    assert read_tree(ds.get_local_copy(use_soft_links=False)) == files
    return (
        len(planted),
        len((named_fast | named_full) & planted),
        len(named_fast - expect_fast) + len(named_full - expect_full),
    )


@pytest.mark.reliability
def test_verify_names_exactly_the_damaged_files(tmp_path, monkeypatch, cli):
    rounds = reliability_count(3, 40)
    rng = random.Random(6_5)
    planted = detected = false_alarms = 0
    for r in range(rounds):
        p, d, f = one_round(tmp_path / f"round{r}", monkeypatch, cli, rng)
        planted, detected, false_alarms = planted + p, detected + d, false_alarms + f
    report_figures("bit rot", rounds=rounds, planted=planted, detected=detected, false_alarms=false_alarms)
    assert detected == planted and false_alarms == 0


@pytest.mark.reliability
def test_random_damage_is_repaired_from_the_cache_and_a_folder(tmp_path, monkeypatch, cli):
    """Rounds of random damage to packs and objects (bit flips, cuts, deletions, same-size
    garbage); part of the damaged content is still cached, the rest only in a folder of
    renamed copies. One ``verify --repair`` must leave nothing damaged, and a cold get of every
    version must read the original bytes."""
    rng = random.Random(12)
    rounds = reliability_count(3, 30)
    damaged = repaired = from_cache = from_folder = read_right = 0
    for r in range(rounds):
        env = isolate(tmp_path / f"round{r}", monkeypatch)
        files = {f"d{i % 5}/f{i}.bin": rng.randbytes(rng.randrange(1, 30_000)) for i in range(40)}
        src = write_tree(tmp_path / f"src{r}", files)
        ds = Dataset.create(dataset_name="rot", dataset_project="p")
        ds.add_files(src)
        ds.upload(chunk_size=0.02)
        ds.finalize()
        ds.get_local_copy()
        service = default_service()
        keys = sorted(
            {
                loc.key
                for locs in service.catalog.locate_objects(sha256(b) for b in files.values()).values()
                for loc in locs
            }
        )
        hit = rng.sample(keys, 4)
        for key, harm in zip(hit, ("flip", "cut", "gone", "junk"), strict=True):
            path = env.storage / key
            if harm == "flip":
                flip_bit(path, rng.randrange(path.stat().st_size), rng)
            elif harm == "cut":
                truncate(path, rng.randrange(path.stat().st_size))
            elif harm == "gone":
                path.unlink()
            else:
                garbage(path, rng)
        found = cli("verify", "--id", ds.id, "--json")
        bad = {p["path"] for p in found.json["data"]["problems"]}
        damaged += len(bad)
        # half of the damaged content leaves the cache; a folder holds renamed copies of all
        for p in sorted(bad)[::2]:
            os.unlink(service.cache.object_file(sha256(files[p])))
        backup = write_tree(
            tmp_path / f"backup{r}", {f"copy-{i}": files[p] for i, p in enumerate(sorted(bad))}
        )
        fixed = cli("verify", "--id", ds.id, "--repair", "--folder", str(backup), "--json")
        assert fixed.code == 0, fixed.out
        assert set(fixed.json["data"]["repaired"]) == bad
        repaired += len(fixed.json["data"]["repaired"])
        sources = fixed.json["data"]["sources"].values()
        from_cache += sum(1 for s in sources if s == "cache")
        from_folder += sum(1 for s in sources if s != "cache")
        shutil.rmtree(env.cache)
        assert cli("verify", "--id", ds.id).code == 0
        got = read_tree(Dataset.get(ds.id).get_local_copy())
        read_right += sum(1 for p, b in files.items() if got.get(p) == b)
        assert got == files
    report_figures(
        "repair",
        rounds=rounds,
        damaged=damaged,
        repaired=repaired,
        from_cache=from_cache,
        from_folder=from_folder,
        files_read_right=read_right,
    )
    assert repaired == damaged > 0
