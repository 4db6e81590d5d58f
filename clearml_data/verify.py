"""Verification: is every file of a version intact, in storage or in a local copy?"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from .catalog import DatasetRow
from .hashing import ordered_map, sha256_file
from .paths import safe_join
from .progress import ProgressFactory, null_progress
from .rowcheck import check_location
from .storage import redact_url


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str    # "missing" | "size" | "hash" | "unreadable"
    detail: str = ""


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


class VerifyMixin:
    """Service operations that check content (mixed into ``Service``)."""

    def verify_storage(self, row: DatasetRow, full: bool = True, max_workers: int | None = None,
                       progress: ProgressFactory = null_progress) -> VerifyReport:
        """Check every object the version needs: present and large enough, and (``full``) re-hashed."""
        view = self.view(row)
        paths_of: dict[str, list[str]] = {}
        for p, (h, _size, _origin) in view.items():
            paths_of.setdefault(h, []).append(p)
        sizes = {h: view[ps[0]][1] for h, ps in paths_of.items()}
        locations = self.catalog.locate_objects(paths_of)
        report = VerifyReport(checked=len(view), bytes=sum(v[1] for v in view.values()))
        by_key: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
        for h in sorted(paths_of):
            if sizes[h] == 0:
                continue
            locs = locations.get(h)
            if not locs:
                report.problems += [Problem(p, "missing", "no storage holds this content")
                                    for p in paths_of[h]]
                continue
            loc = check_location(next((x for x in locs if x.storage == row.storage), locs[0]))
            by_key.setdefault((loc.storage, loc.key), []).append((h, loc.offset, loc.length))
        bar = progress(sum(sizes[m[0]] for ms in by_key.values() for m in ms), "B",
                       "Verifying" if full else "Checking", files=len(paths_of))

        def check(item) -> list[tuple[str, str, str]]:
            (storage, key), members = item
            driver = self.driver(storage)
            where = f"{key} in {redact_url(storage)}"
            try:
                size = driver.stat(key).size
            except FileNotFoundError:
                return [(h, "missing", f"{where} is missing") for h, _o, _n in members]
            except OSError as exc:
                return [(h, "unreadable", f"{where}: {exc}") for h, _o, _n in members]
            bad = [(h, "size", f"{where} is truncated ({size} bytes)")
                   for h, off, n in members if off + n > size]
            if not full:
                return bad
            short = {b[0] for b in bad}
            for h, off, n in members:
                if h in short:
                    continue
                try:
                    digest = _hash_range(driver, key, off, n)
                except OSError as exc:
                    bad.append((h, "unreadable", f"{where}: {exc}"))
                    continue
                if digest != h:
                    bad.append((h, "hash", f"{where} holds different bytes"))
            return bad

        try:
            workers = max_workers or self.driver(row.storage).default_max_workers
            for (_key, members), bad in ordered_map(check, list(by_key.items()), workers, window=64):
                bar.update(sum(n for _h, _o, n in members), files=len(members))
                for h, kind, detail in bad:
                    report.problems += [Problem(p, kind, detail) for p in paths_of[h]]
        finally:
            bar.close()
        report.problems.sort(key=lambda pr: pr.path)
        return report

    def verify_folder(self, row: DatasetRow, folder: str | os.PathLike, skip_hash: bool = False,
                      max_workers: int | None = None,
                      progress: ProgressFactory = null_progress) -> VerifyReport:
        """Check a local copy against the version's sizes and (unless ``skip_hash``) hashes."""
        root = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if not os.path.isdir(root):
            from .errors import UsageError

            raise UsageError(f"no such folder: {root}")
        view = self.view(row)
        report = VerifyReport(checked=len(view), bytes=sum(v[1] for v in view.values()))
        to_hash = []
        for p in sorted(view):
            h, size, _origin = view[p]
            local = safe_join(root, p)  # an unsafe catalog path is an error, not a missing file
            try:
                st = os.stat(local)
            except OSError:
                report.problems.append(Problem(p, "missing"))
                continue
            if st.st_size != size:
                report.problems.append(Problem(p, "size", f"{st.st_size} bytes, expected {size}"))
            elif not skip_hash:
                to_hash.append((p, local, h, size))
        bar = progress(sum(t[3] for t in to_hash), "B", "Verifying", files=len(to_hash))

        def digest(item):
            try:
                return sha256_file(item[1])[0]
            except OSError as exc:
                return f"unreadable: {exc.strerror}"

        try:
            for (p, _local, h, size), got in ordered_map(digest, to_hash, max_workers):
                bar.update(size, files=1)
                if got.startswith("unreadable"):
                    report.problems.append(Problem(p, "unreadable", got))
                elif got != h:
                    report.problems.append(Problem(p, "hash", "content differs"))
        finally:
            bar.close()
        report.problems.sort(key=lambda pr: pr.path)
        return report


def _hash_range(driver, key: str, offset: int, length: int, block: int = 8 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    done = 0
    while done < length:
        n = min(block, length - done)
        data = driver.read_range(key, offset + done, n)
        if len(data) != n:
            raise OSError(f"short read of {key} at {offset + done}")
        h.update(data)
        done += n
    return h.hexdigest()
