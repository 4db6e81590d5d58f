"""Start-up cost of the command-line tool: what a user waits for before any work starts.

    python benchmarks/startup.py                  # 20 runs of each, medians
    python benchmarks/startup.py --runs 50 --top 20

Three commands run as fresh processes, interleaved round by round so that a busy moment
of the machine hits all of them alike:

- ``python -c pass``: the interpreter alone, the floor of any Python tool;
- ``python -c "import clearml_data.cli.main"``: the CLI's entry module and what it imports;
- ``clearml-data --version``: the console script, end to end.

The figures are the medians minus the interpreter's, next to the goal of at most 60 ms
(a figure to watch, not a test: nothing fails when it is missed). One more run under
``python -X importtime`` names the modules that cost the most, by their own time and by
top-level package. Every process gets its own empty catalog, storage, cache, state and
config folders, so nothing on the machine changes what is imported, and reads bytecode
that a warm-up run of each command wrote into a folder of its own (as an installed package
has it; ``PYTHONDONTWRITEBYTECODE`` would make every run compile). ``benchmarks/run.py``
runs this too and puts the figures in its report; alone, it writes
``benchmarks/results/startup.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "startup.json"
#: the goal for the CLI's start-up above the interpreter's, in milliseconds
GOAL_MS = 60.0
ENTRY_MODULE = "clearml_data.cli.main"
#: the variables that point clearml-data at its catalog, storage, cache, state and config
ISOLATED = (
    "CLEARML_DATA_CATALOG",
    "CLEARML_DATA_STORAGE",
    "CLEARML_DATA_CACHE_DIR",
    "CLEARML_DATA_STATE_DIR",
    "CLEARML_DATA_CONFIG",
)


def isolated_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_DATA_")}
    for var in ISOLATED:
        env[var] = str(root / var.lower())
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        env[var] = str(root / "xdg" / var.lower())
    # bytecode as an installed package has it (pip compiles it): written once by the warm-up
    # run, into a folder of our own rather than the source tree, and read from then on
    for var in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME"):
        env.pop(var, None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def console_script() -> str | None:
    """The ``clearml-data`` script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "clearml-data"
    return str(beside) if beside.is_file() else shutil.which("clearml-data")


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds one process takes; a failing command is an error, not a fast figure."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}"
        )
    return seconds


def import_offenders(env: dict[str, str], top: int) -> dict:
    """One ``-X importtime`` run of the entry module: the costliest modules and packages."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {ENTRY_MODULE}"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[tuple[str, int, int]] = []  # (name, self us, cumulative us)
    for line in done.stderr.splitlines():
        # "import time:       123 |        456 |     package.module" (nesting shown by spaces)
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            own_us, cumulative_us, name = line.removeprefix("import time:").split("|")
            modules.append((name.strip(), int(own_us), int(cumulative_us)))
        except ValueError:
            continue
    if not modules:
        return {"total_ms": None, "by_module": [], "by_package": []}
    per_package: dict[str, int] = defaultdict(int)
    for name, own, _cumulative in modules:
        per_package[name.split(".")[0]] += own
    return {
        "total_ms": round(sum(own for _n, own, _c in modules) / 1000, 1),
        "modules": len(modules),
        "by_module": [
            {"module": n, "self_ms": round(s / 1000, 1), "cumulative_ms": round(c / 1000, 1)}
            for n, s, c in sorted(modules, key=lambda m: -m[1])[:top]
        ],
        "by_package": [
            {"package": p, "self_ms": round(s / 1000, 1)}
            for p, s in sorted(per_package.items(), key=lambda kv: -kv[1])[:top]
        ],
    }


def measure(runs: int = 20, top: int = 15) -> dict:
    """The start-up figures (see the module docstring) as a JSON-ready dict."""
    script = console_script()
    commands = {
        "interpreter": [sys.executable, "-c", "pass"],
        "import_cli": [sys.executable, "-c", f"import {ENTRY_MODULE}"],
    }
    if script:
        commands["version"] = [script, "--version"]
    samples: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="clearml-data-startup-") as tmp:
        env = isolated_env(Path(tmp))
        for argv in commands.values():  # warm the page cache and the bytecode caches once
            wall(argv, env)
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(wall(argv, env))
        offenders = import_offenders(env, top)
    medians_ms = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    base = medians_ms["interpreter"]
    figures = {}
    for name in ("import_cli", "version"):
        if name in medians_ms:
            above = medians_ms[name] - base
            figures[name] = {
                "median_ms": round(medians_ms[name], 1),
                "above_interpreter_ms": round(above, 1),
                "goal_ms": GOAL_MS,
                "met": above <= GOAL_MS,
            }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "interpreter_ms": round(base, 1),
        "figures": figures,
        "commands": {
            name: " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))
            for name, argv in commands.items()
        },
        "samples_ms": {name: [round(s * 1000, 1) for s in v] for name, v in samples.items()},
        "importtime": offenders,
    }


def markdown(report: dict, heading: str = "#") -> str:
    """The start-up figures as a Markdown section (``heading``: its level)."""
    labels = {"import_cli": f"`import {ENTRY_MODULE}`", "version": "`clearml-data --version`"}
    lines = [
        f"{heading} Start-up",
        "",
        f"Medians of {report['runs']} fresh processes each, interleaved; `python -c pass` takes "
        f"{report['interpreter_ms']:.1f} ms here and is subtracted. The goal is at most "
        f"{GOAL_MS:.0f} ms above the interpreter (a figure to watch, not a test).",
        "",
        "| command | median (ms) | above the interpreter (ms) | goal (ms) | met |",
        "|---|---:|---:|---:|---|",
    ]
    for name, fig in report["figures"].items():
        lines.append(
            f"| {labels[name]} | {fig['median_ms']:.1f} | {fig['above_interpreter_ms']:.1f} | "
            f"{fig['goal_ms']:.0f} | {'yes' if fig['met'] else 'no'} |"
        )
    imp = report["importtime"]
    if imp.get("by_package"):
        lines += [
            "",
            f'`python -X importtime -c "import {ENTRY_MODULE}"`: {imp["modules"]} modules, '
            f"{imp['total_ms']:.0f} ms of import time in all. Costliest top-level packages (own "
            "time of all their modules) and modules (own time):",
            "",
            "| package | ms | | module | ms |",
            "|---|---:|---|---|---:|",
        ]
        for pkg, mod in zip(imp["by_package"], imp["by_module"], strict=False):
            lines.append(
                f"| {pkg['package']} | {pkg['self_ms']:.1f} | | {mod['module']} | {mod['self_ms']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="processes per command (median reported)")
    ap.add_argument("--top", type=int, default=15, help="modules and packages listed from -X importtime")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default: {DEFAULT_OUT})")
    a = ap.parse_args(argv)
    if a.runs < 1 or a.top < 1:
        ap.error("--runs and --top must be at least 1")
    report = measure(a.runs, a.top)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"written to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
