"""kill -9 anywhere: named crash points and random SIGKILLs during add / upload / close /
delete / squash / get --copy, each followed by a resume and a check of every invariant.

One warmed-up test process forks a child per run (no interpreter start-up per kill). The
child runs a short script of ``clearml-data`` commands in-process and dies, either at a
named crash point (CLEARML_DATA_CRASH_AT=<point>@<n>) or by a SIGKILL after a random
delay. Then a fresh child re-runs the interrupted command and the rest of the script, and
the parent checks, with its own record of what each version must hold:

- every final version touched holds exactly the files it must, every one present in its
  storage and hash-correct (its bytes are read from the storage folder and re-hashed);
- no draft is left: each one was resumed by re-running the same command, and closed;
- a copy folder (get --copy) that the same command finished holds the version byte for byte;
- the resume wrote no object bytes beyond the content the catalog did not record as
  stored (so 0 bytes when the crash came after the objects were uploaded);
- no temporary file is left in the storages, the cache or the CLI state folder, and a
  deleted version leaves no local copy behind.

A negative control runs the same check over a naive put ("skip the upload if the key
exists", writing straight to the final key): it must fail.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import io
import os
import random
import signal
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clearml_data import ClearMLDataError, __version__, manifest
from clearml_data import _crashpoints as crashpoints
from clearml_data import service as service_module
from clearml_data.cache.links import remove_tree
from clearml_data.cli import main
from clearml_data.config import Settings
from clearml_data.service import Service
from clearml_data.storage import PluginManager
from clearml_data.storage.folder import FolderDriver
from clearml_data.testing import isolate

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability
cli_main = importlib.import_module("clearml_data.cli.main")  # the package exports main() by that name

KILLS = reliability_count(300, 3000)
CONTROL_KILLS = reliability_count(24, 200)
CHUNK_MB = "0.004"  # packs of ~4 KiB, and files of 4 KiB or more are objects of their own
STEP_FAILED = 3  # exit status of a child whose command failed (not a crash)

Expected = dict[str, str]  # the view a version must have: path -> sha256


@dataclass
class Run:
    """One script of commands, killed once and resumed."""

    kind: str  # ingest-3 | ingest-2 | squash | delete | copy
    steps: list[list[str]]
    draft: str | None = None  # the draft the script closes (ingest)
    expect: Expected = field(default_factory=dict)
    storage: str = ""
    squash_name: str = ""  # the name of the version a squash makes (unique)
    deleted: str | None = None
    children: dict[str, Expected] = field(default_factory=dict)
    target: Path | None = None  # the folder a copy writes (get --copy)


class World:
    """One catalog, two folder storages and a cache, shared by every run of a test."""

    def __init__(self, env, root: Path, rng: random.Random):
        self.env = env
        self.root = root
        self.rng = rng
        self.storage2 = str(root / "storage2")
        self.src = root / "src"
        self.plugins = PluginManager()
        self.finals: dict[str, Expected] = {}  # id -> the view it must have
        self.storage_of: dict[str, str] = {}
        self.verified: set[tuple] = set()  # object ranges already re-hashed
        self.counter = 0

    # -- the parent's own catalog access; closed before every fork ------------------------
    @contextmanager
    def service(self):
        svc = Service(Settings.load(), plugins=self.plugins)
        try:
            yield svc
        finally:
            svc.close()  # no SQLite connection may cross a fork

    # -- scripts ------------------------------------------------------------------------------
    def _content(self, i: int) -> tuple[Path, Expected]:
        folder = self.src / str(i)
        files: dict[str, bytes] = {}
        for k in range(6):
            files[f"c{i}/f{k}.bin"] = os.urandom(self.rng.randrange(300, 2500))
        for k in range(2):
            files[f"c{i}/big{k}.bin"] = os.urandom(40_000 + k)
        files["shared.bin"] = os.urandom(1000)  # the same path in every version: "modified"
        for rel, data in files.items():
            p = folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return folder, {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}

    def victims(self) -> list[str]:
        """Final versions with a final child (what a forced delete folds into its children)."""
        with self.service() as svc:
            pairs = svc.catalog.conn.execute("SELECT dataset_id, parent_id FROM dataset_parents").fetchall()
        return sorted({p for c, p in pairs if c in self.finals and p in self.finals})

    def feasible(self, kind: str) -> bool:
        if kind == "squash":
            return len(self.finals) >= 2
        if kind == "delete":
            return bool(self.victims())
        if kind == "copy":
            return bool(self.finals)
        return True

    def next_run(
        self, kind: str | None = None, parent: str | None = "random", storage: str | None = None
    ) -> Run:
        self.counter += 1
        i = self.counter
        in_default = [d for d in self.finals if self.storage_of[d] == str(self.env.storage)]
        if kind is None:
            kinds = ["ingest-3"] * 8 + ["ingest-2"] * 5
            if len(self.finals) >= 2:
                kinds += ["squash"] * 4
            if self.victims():
                kinds += ["delete"] * 3
            if self.finals:
                kinds += ["copy"] * 3
            kind = self.rng.choice(kinds)
        if kind.startswith("ingest"):
            if parent == "random":
                parent = self.rng.choice(in_default) if in_default and self.rng.random() < 0.8 else None
            folder, files = self._content(i)
            with self.service() as svc:
                row = svc.create(name="crash", project="kill-9", parents=[parent] if parent else [])
            expect = dict(self.finals[parent]) if parent else {}
            expect.update(files)
            add = ["add", "--id", row.id, "--files", str(folder)]
            close = ["close", "--id", row.id, "--chunk-size", CHUNK_MB]
            steps = (
                [add, ["upload", "--id", row.id, "--chunk-size", CHUNK_MB], close]
                if kind == "ingest-3"
                else [add, close]
            )
            return Run(kind, steps, draft=row.id, expect=expect, storage=str(self.env.storage))
        if kind == "squash":
            ids = self.rng.sample(sorted(self.finals), 2)
            storage = storage or (self.storage2 if self.rng.random() < 0.6 else str(self.env.storage))
            expect: Expected = {}
            for d in ids:
                expect.update(self.finals[d])
            return Run(
                kind,
                [
                    [
                        "squash",
                        "--name",
                        f"squash-{i}",
                        "--project",
                        "kill-9",
                        "--ids",
                        *ids,
                        "--storage",
                        storage,
                    ]
                ],
                expect=expect,
                storage=storage,
                squash_name=f"squash-{i}",
            )
        if kind == "copy":  # a version's files into a fresh folder, which a re-run finishes
            source = self.rng.choice(sorted(self.finals))
            target = self.root / "copies" / str(i)
            return Run(
                kind,
                [["get", "--id", source, "--copy", str(target)]],
                expect=self.finals[source],
                target=target,
            )
        victim = self.rng.choice(self.victims())
        copy = self.env.cache / "datasets" / victim  # a local copy the delete must remove
        copy.mkdir(parents=True, exist_ok=True)
        (copy / "file").write_bytes(b"x")
        return Run(
            "delete",
            [["delete", "--id", victim, "--force"]],
            deleted=victim,
            children={c: self.finals[c] for c in self._children(victim)},
        )

    def _children(self, dataset_id: str) -> list[str]:
        with self.service() as svc:
            return [c for c in svc.catalog.children(dataset_id) if c in self.finals]

    # -- running a script in a forked child ---------------------------------------------------
    def fork(self, run: Run, start: int, crash_at: str | None, trace: Path, naive: bool) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            os.environ[crashpoints.TRACE_ENV] = str(trace)
            if crash_at:
                os.environ[crashpoints.ENV] = crash_at
            else:
                os.environ.pop(crashpoints.ENV, None)
            if naive:
                FolderDriver.put_file = naive_put_file
            code = 0
            for n, argv in enumerate(run.steps[start:], start):
                with open(trace, "a") as fh:
                    fh.write(f"step {n} {argv[0]}\n")
                out, err = io.StringIO(), io.StringIO()
                if main(argv, stdout=out, stderr=err) != 0:
                    (trace.parent / (trace.name + ".err")).write_text(f"{argv}: {err.getvalue()}")
                    code = STEP_FAILED
                    break
        finally:
            os._exit(code)


def naive_put_file(self, local_path, key, *, overwrite=True):
    """The write order the control must catch: an existing key is taken as complete, and the
    bytes go straight to the final key (a crash leaves a partial object there)."""
    final = self._path(key)
    if os.path.exists(final):
        return
    os.makedirs(os.path.dirname(final), exist_ok=True)
    with open(local_path, "rb") as fh:
        data = fh.read()
    with open(final, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        crashpoints.reach("storage.temp_written")
        out.write(data[len(data) // 2 :])


def wait(pid: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of a child."""
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def read_trace(trace: Path) -> tuple[int, str, list[str]]:
    """(interrupted step, last thing reached, every point reached) from a child's trace."""
    step, last, points = 0, "before the first command started", []
    if trace.exists():
        for line in trace.read_text().splitlines():
            if line.startswith("step "):
                _, n, command = line.split()
                step = int(n)
                last = f"{command}, before its first point"
            elif line.startswith("crash "):
                last = line.split()[1].split("@")[0]
            else:
                last = f"after {line}"
                points.append(line)
    return step, last, points


def storage_snapshot(*folders: str) -> dict[str, tuple[int, int, int]]:
    snap = {}
    for folder in folders:
        for dirpath, _dirs, names in os.walk(folder):
            for name in names:
                p = os.path.join(dirpath, name)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    continue
                snap[p] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return snap


def written_bytes(before: dict, after: dict) -> int:
    """Object bytes: the packs and objects that are new or were rewritten (a new inode or
    mtime) since ``before`` (a version's manifest is not content)."""
    return sum(v[0] for p, v in after.items() if before.get(p) != v and ("/packs/" in p or "/objects/" in p))


class Checker:
    """The invariants, as a list of problems (empty: all hold)."""

    def __init__(self, world: World):
        self.w = world

    def version(self, svc: Service, dataset_id: str, expect: Expected, full: bool = False) -> list[str]:
        row = svc.catalog.get_dataset(dataset_id)
        if row is None:
            return [f"final version {dataset_id} is missing from the catalog"]
        if not row.is_final:
            return [f"version {dataset_id} is still a draft ({row.status})"]
        view = svc.view(row)
        got = {p: h for p, (h, _s, _o) in view.items()}
        problems = []
        if got != expect:
            wrong = sorted(set(got) ^ set(expect) | {p for p in got if p in expect and got[p] != expect[p]})
            problems.append(f"{dataset_id} does not hold what it must: {wrong[:3]}")
        hashes = {h: s for h, s, origin in view.values() if full or origin == dataset_id}
        locations = svc.catalog.locate_objects(hashes)
        for h, size in hashes.items():
            if size == 0:
                continue
            loc = next((x for x in locations.get(h, []) if x.storage == row.storage), None)
            if loc is None:
                problems.append(f"{dataset_id}: content {h[:12]} is recorded in no object of its storage")
                continue
            path = os.path.join(row.storage, *loc.key.split("/"))
            try:
                st = os.stat(path)
            except FileNotFoundError:
                problems.append(f"{dataset_id}: object {loc.key} is missing")
                continue
            memo = (path, st.st_ino, st.st_mtime_ns, loc.offset, loc.length, h)
            if memo in self.w.verified:
                continue
            with open(path, "rb") as fh:
                fh.seek(loc.offset)
                data = fh.read(loc.length)
            if len(data) != size or hashlib.sha256(data).hexdigest() != h:
                problems.append(f"{dataset_id}: object {loc.key} holds wrong bytes for {h[:12]}")
            else:
                self.w.verified.add(memo)
        # the version's manifest in its storage names the same files
        key = manifest.manifest_key(dataset_id)
        try:
            data = Path(row.storage, *key.split("/")).read_bytes()
            listed = {p: f[0] for p, f in manifest.decode(data, key).files.items()}
            if listed != got:
                problems.append(f"{dataset_id}: its manifest lists other files than the catalog")
        except FileNotFoundError:
            problems.append(f"{dataset_id}: its manifest {key} is missing")
        except ClearMLDataError as exc:
            problems.append(f"{dataset_id}: damaged manifest: {exc}")
        return problems

    def debris(self, state: bool = False) -> list[str]:
        """Temporary files in the storages and the cache (and, with ``state``, the CLI state
        folder, which the next command that writes the remembered dataset sweeps)."""
        env = self.w.env
        found = []
        for folder in (str(env.storage), self.w.storage2):
            for dirpath, _dirs, names in os.walk(folder):
                found += [os.path.join(dirpath, n) for n in names if n.startswith(".tmp")]
        tmp = env.cache / "tmp"
        if tmp.is_dir():
            found += [str(p) for p in tmp.iterdir()]
        datasets = env.cache / "datasets"
        if datasets.is_dir():
            found += [str(p) for p in datasets.iterdir() if p.name.startswith(".build-")]
        if state and env.state.is_dir():
            found += [str(p) for p in env.state.iterdir() if p.name.endswith(".tmp")]
        return [f"temporary file left behind: {p}" for p in found]

    def drafts(self, svc: Service) -> list[str]:
        return [
            f"draft {r.id} ({r.name}) was not resumed" for r in svc.catalog.find_datasets(statuses=["draft"])
        ]


def pending_bytes(svc: Service, run: Run) -> int | None:
    """Bytes of the content the catalog does not record as stored for the run's draft
    (None when the draft's change rows may still be incomplete)."""
    if run.kind.startswith("ingest"):
        row = svc.catalog.get_dataset(run.draft)
    elif run.kind == "squash":
        rows = svc.catalog.find_datasets(project="kill-9", name=run.squash_name, statuses=["draft"])
        row = rows[-1] if rows else None
    else:
        return None
    if row is None or row.is_final:
        return 0 if row is not None else None
    return sum({c.hash: c.size for c in svc.pending_uploads(row)}.values())


def do_run(
    world: World, checker: Checker, run: Run, crash_at: str | None, delay: float | None, naive: bool = False
) -> dict:
    """Run, kill (a crash point or a SIGKILL after ``delay``), resume, check. Returns what happened."""
    world.counter += 1
    trace = world.root / "traces" / f"{world.counter}"
    trace.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    pid = world.fork(run, 0, crash_at, trace, naive)
    if delay is not None:
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code, sig = wait(pid)
    ran = time.perf_counter() - t0
    step, last, points = read_trace(trace)
    if code == STEP_FAILED:  # a command failed on its own: the world is broken, stop here
        return {
            "killed": False,
            "point": None,
            "fatal": True,
            "problems": [
                f"a command failed before any kill: {(trace.parent / (trace.name + '.err')).read_text()}"
            ],
        }
    killed = sig == signal.SIGKILL or code == crashpoints.EXIT_CODE
    outcome = {
        "killed": killed,
        "point": last if killed else None,
        "points": points,
        "step": step,
        "ran": ran,
    }
    if crash_at and code != crashpoints.EXIT_CODE:
        outcome["killed"] = False  # the point was not reached that often this time
        if code not in (0, None):
            pytest.fail(f"{run.kind}: the child exited with {code} (crash at {crash_at})")
    with world.service() as svc:
        # what the resume may write: at most the content the catalog lacks, if the rows are complete
        rows_complete = (run.kind.startswith("ingest") and (step > 0 or "add.recorded" in points)) or (
            run.kind == "squash" and "squash.recorded" in points
        )
        budget = pending_bytes(svc, run) if rows_complete else None
        resume_from = step if outcome["killed"] else len(run.steps)
        if outcome["killed"] and _already_done(svc, run):
            resume_from = len(run.steps)
    before = storage_snapshot(str(world.env.storage), world.storage2)
    if resume_from < len(run.steps):
        rtrace = trace.with_name(trace.name + ".resume")
        rpid = world.fork(run, resume_from, None, rtrace, naive)
        rcode, rsig = wait(rpid)
        if rcode != 0:
            err = trace.parent / (rtrace.name + ".err")
            detail = err.read_text() if err.exists() else ""
            return {**outcome, "problems": [f"the resume failed ({rcode}, {rsig}): {detail}"]}
    after = storage_snapshot(str(world.env.storage), world.storage2)
    resumed_bytes = written_bytes(before, after) if outcome["killed"] else 0
    problems: list[str] = []
    if budget is not None and resumed_bytes > budget:
        problems.append(f"the resume wrote {resumed_bytes} bytes; only {budget} were not stored yet")
    with world.service() as svc:
        problems += _settle(world, checker, svc, run)
        problems += checker.drafts(svc)
    problems += checker.debris()
    return {**outcome, "problems": problems, "resumed_bytes": resumed_bytes, "budget": budget}


def _already_done(svc: Service, run: Run) -> bool:
    """Did the interrupted command complete before the kill (so a user would not re-run it)?"""
    if run.kind == "copy":  # the same get --copy is run again: it finishes the copy, or finds it done
        return False
    if run.kind.startswith("ingest"):
        row = svc.catalog.get_dataset(run.draft)
        return row is not None and row.is_final
    if run.kind == "squash":
        return any(r.is_final for r in svc.catalog.find_datasets(project="kill-9", name=run.squash_name))
    return svc.catalog.get_dataset(run.deleted) is None


def _settle(world: World, checker: Checker, svc: Service, run: Run) -> list[str]:
    """Record the run's outcome in the world, and check the versions it touched."""
    if run.kind.startswith("ingest"):
        world.finals[run.draft] = run.expect
        world.storage_of[run.draft] = run.storage
        return checker.version(svc, run.draft, run.expect)
    if run.kind == "copy":
        got = {}
        for p in sorted(run.target.rglob("*")):
            if p.is_file():
                got[p.relative_to(run.target).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
        remove_tree(run.target)
        if got != run.expect:
            wrong = sorted(set(got) ^ set(run.expect) | {p for p in got if got[p] != run.expect.get(p)})
            return [f"the copy in {run.target} does not hold the version's files: {wrong[:3]}"]
        return []
    if run.kind == "squash":
        made = svc.catalog.find_datasets(project="kill-9", name=run.squash_name)
        if len(made) != 1:
            return [f"the squash made {len(made)} versions"]
        world.finals[made[0].id] = run.expect
        world.storage_of[made[0].id] = run.storage
        return checker.version(svc, made[0].id, run.expect, full=True)
    problems = []
    if svc.catalog.get_dataset(run.deleted) is not None:
        problems.append(f"deleted version {run.deleted} is still in the catalog")
    if list((world.env.cache / "datasets").glob(f"{run.deleted}*")):
        problems.append(f"a local copy of deleted version {run.deleted} is left behind")
    world.finals.pop(run.deleted, None)
    for child, expect in run.children.items():
        problems += checker.version(svc, child, expect)
    return problems


def calibrate(
    world: World, checker: Checker
) -> tuple[dict[str, collections.Counter], dict[str, list[float]]]:
    """Run each kind of script once without a kill: how often it reaches each point, how long it takes."""
    reached: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    took: dict[str, list[float]] = collections.defaultdict(list)
    runs = [
        ("ingest-3", None, None),
        ("ingest-3", "last", None),
        ("ingest-2", "last", None),
        ("squash", None, world.storage2),
        ("squash", None, str(world.env.storage)),
        ("delete", None, None),
        ("copy", None, None),
    ]
    last = None
    for kind, parent, storage in runs:
        run = world.next_run(kind, parent=last if parent == "last" else parent, storage=storage)
        result = do_run(world, checker, run, None, None)
        assert result["problems"] == [], result["problems"]
        last = run.draft
        took[kind].append(result["ran"])
        reached[kind] |= collections.Counter(result["points"])
    return reached, took


@pytest.fixture
def world(tmp_path, monkeypatch):
    # A kill, not a power cut, is what is tested: the files need not reach the disk, so the
    # world lives in memory (tmpfs) where there is one, and fsync costs nothing there.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    root = Path(tempfile.mkdtemp(prefix="clearml-data-crash-", dir=base))
    try:
        env = isolate(root / "env", monkeypatch)
        w = World(env, root / "world", random.Random(int(os.environ.get("CLEARML_DATA_CRASH_SEED", "6"))))
        w.root.mkdir()
        # a warmed-up parent: children inherit the CLI's parser and the loaded plugins instead
        # of building them again for every command (35 ms a command on this machine)
        parser = cli_main.build_parser(__version__)
        monkeypatch.setattr(cli_main, "build_parser", lambda _version: parser)
        monkeypatch.setattr(service_module, "PluginManager", lambda: w.plugins)
        yield w
        w.plugins.close()
    finally:
        remove_tree(root)


def test_every_crash_point_is_called_and_documented():
    source = Path(crashpoints.__file__).parent
    called = collections.Counter()
    for path in source.rglob("*.py"):
        text = path.read_text()
        for name in crashpoints.POINTS:
            called[name] += text.count(f'crashpoints.reach("{name}")')
    assert {n for n, c in called.items() if c == 0} == set()
    doc = (Path(__file__).parents[2] / "docs" / "internals" / "reliability-crash.md").read_text()
    assert [n for n in crashpoints.POINTS if f"`{n}`" not in doc] == []


def test_crash_at_parses_and_rejects_unknown_points(monkeypatch, tmp_path, cli):
    assert crashpoints.parse("upload.done@3") == ("upload.done", 3)
    assert crashpoints.parse("upload.done") == ("upload.done", 1)
    src = tmp_path / "d"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert cli("create", "--project", "p", "--name", "n").code == 0
    monkeypatch.setenv(crashpoints.ENV, "no.such.point")
    r = cli("add", "--files", src)
    assert r.code == 1 and "unknown crash point 'no.such.point'" in r.err and "Traceback" not in r.err
    monkeypatch.setenv(crashpoints.ENV, "add.hashed@0")
    r = cli("add", "--files", src)
    assert r.code == 1 and "positive integer" in r.err


def test_kill_9_anywhere_leaves_a_resumable_draft_or_a_complete_version(world):
    checker = Checker(world)
    started = time.perf_counter()
    reached, took = calibrate(world, checker)
    by_kind = {p: [k for k in reached if reached[k][p]] for p in crashpoints.POINTS}
    never = [p for p, kinds in by_kind.items() if not kinds]
    assert never == [], f"no script reaches {never}"
    named_target = KILLS // 2
    hits: collections.Counter = collections.Counter()  # named point -> kills there
    random_hits: collections.Counter = collections.Counter()  # where random SIGKILLs landed
    named = random_kills = survived = 0
    after_upload = resent = 0  # kills after every object was stored and recorded; bytes their resume sent
    failures: list[str] = []
    order = list(crashpoints.POINTS)
    rng = world.rng
    while named + random_kills < KILLS:
        point = order[named] if named < len(order) else rng.choice(order)
        kinds = [k for k in by_kind[point] if world.feasible(k)]
        use_named = named < named_target and bool(kinds)
        if use_named:
            kind = rng.choice(kinds)
            run = world.next_run(kind)
            spec = f"{point}@{rng.randint(1, reached[kind][point])}"
            result = do_run(world, checker, run, spec, None)
        else:
            run = world.next_run()
            delay = rng.uniform(0, statistics.median(took[run.kind][-9:]))
            result = do_run(world, checker, run, None, delay)
        if result["problems"]:
            failures.append(f"{run.kind} killed at {result['point']}: {result['problems']}")
        if result.get("fatal"):
            break
        if not result["killed"]:
            took[run.kind].append(result["ran"])  # a whole run: how long this kind takes now
            continue
        if use_named:
            named += 1
        else:
            random_kills += 1
        (hits if use_named else random_hits)[result["point"]] += 1
        survived += not result["problems"]
        if result.get("budget") == 0:
            after_upload += 1
            resent += result.get("resumed_bytes", 0)
    # every final version, re-read from storage in full at the end
    with world.service() as svc:
        for dataset_id, expect in world.finals.items():
            failures += checker.version(svc, dataset_id, expect, full=True)
        assert svc.catalog.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # a kill while the CLI wrote its state file: the next command that writes it sweeps up
    assert (
        main(["create", "--project", "kill-9", "--name", "last"], stdout=io.StringIO(), stderr=io.StringIO())
        == 0
    )
    failures += checker.debris(state=True)
    kills = named + random_kills
    points_hit = [p for p in crashpoints.POINTS if hits[p]]
    elapsed = time.perf_counter() - started
    print(
        f"\nkill -9: {kills} kills ({named} at named points, {random_kills} random SIGKILLs) "
        f"in {elapsed:.1f} s; survived {survived}"
    )
    print("  named crash points (kills per point):")
    for point in crashpoints.POINTS:
        print(f"  {hits[point]:5d}  {point}")
    print("  random SIGKILLs, by the last point the child had passed:")
    for where, n in sorted(random_hits.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {where}")
    print(f"  {after_upload} kills came after every object was stored; their resumes sent {resent} bytes")
    report_figures(
        "kill -9",
        kills=kills,
        survived=survived,
        named=named,
        random=random_kills,
        points=f"{len(points_hit)}/{len(crashpoints.POINTS)}",
        finals=len(world.finals),
        resumed_after_upload=after_upload,
        bytes_resent=resent,
        seconds=round(elapsed, 1),
    )
    assert failures == []
    assert [p for p in crashpoints.POINTS if not hits[p]] == []
    assert survived == kills
    assert after_upload > 0 and resent == 0


def test_naive_write_order_fails_the_same_check(world):
    """Negative control: "skip the upload if the key exists" plus a non-atomic write."""
    checker = Checker(world)
    reached, took = calibrate(world, checker)
    kills = failures = 0
    rng = world.rng
    while kills < CONTROL_KILLS:
        run = world.next_run(rng.choice(["ingest-3", "ingest-2"]))
        if kills % 2 == 0:  # half at the step a crash leaves a partial object at its key
            spec = f"storage.temp_written@{rng.randint(1, reached[run.kind]['storage.temp_written'])}"
            result = do_run(world, checker, run, spec, None, naive=True)
        else:
            result = do_run(
                world, checker, run, None, rng.uniform(0, statistics.median(took[run.kind])), naive=True
            )
        if result.get("fatal"):
            failures += 1
            break
        if not result["killed"]:
            continue
        kills += 1
        bad_objects = [
            p
            for p in result["problems"]
            if "wrong bytes" in p or "is missing" in p or "damaged manifest" in p
        ]
        failures += bool(bad_objects)
        if failures == 1 and bad_objects:
            print(f"\ncontrol failure, e.g.: {bad_objects[0]}")
        if result["problems"]:  # start the next run from a sound world
            bad = run.draft
            world.finals.pop(bad, None)
            with world.service() as svc:
                for child in svc.catalog.children(bad):
                    world.finals.pop(child, None)
    print(f"\nnaive write order: {failures} of {kills} kills left a final version with a bad object")
    report_figures("kill -9 control (naive write order)", kills=kills, control_failures=failures)
    assert failures > 0
