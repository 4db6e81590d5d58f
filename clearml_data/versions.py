"""Dataset version strings: PEP 440 ordering and ClearML's auto-increment."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

DEFAULT_VERSION = "1.0.0"


def parse(text: str) -> Version | None:
    try:
        return Version(text)
    except (InvalidVersion, TypeError):
        return None


def sort_key(text: str) -> tuple:
    """Valid versions sort by PEP 440 above every invalid one."""
    v = parse(text)
    return (1, v) if v is not None else (0, text)


def bump(text: str) -> str:
    """The next version after ``text``: 1.0.0 -> 1.0.1, 1.0 -> 1.1, 1.0.0rc1 -> 1.0.0rc2."""
    v = parse(text)
    if v is None:
        return DEFAULT_VERSION
    release = ".".join(str(p) for p in v.release)
    epoch = f"{v.epoch}!" if v.epoch else ""
    if v.dev is not None:
        return f"{epoch}{release}{_pre(v)}{_post(v)}.dev{v.dev + 1}"
    if v.post is not None:
        return f"{epoch}{release}{_pre(v)}.post{v.post + 1}"
    if v.pre is not None:
        return f"{epoch}{release}{v.pre[0]}{v.pre[1] + 1}"
    parts = list(v.release)
    parts[-1] += 1
    return epoch + ".".join(str(p) for p in parts)


def _pre(v: Version) -> str:
    return f"{v.pre[0]}{v.pre[1]}" if v.pre is not None else ""


def _post(v: Version) -> str:
    return f".post{v.post}" if v.post is not None else ""


def same(a: str, b: str) -> bool:
    """True when two version strings name the same version: "1.0" and "1.0.0" do."""
    if a == b:
        return True
    va, vb = parse(a), parse(b)
    return va is not None and va == vb


def taken_by(text: str, existing: list[str]) -> str | None:
    """The existing version string equal to ``text`` (exactly or by PEP 440), if any."""
    return next((v for v in existing if same(text, v)), None)


def next_version(existing: list[str]) -> str:
    """The version a new dataset gets when none is given: one above the highest."""
    parsed = [(v, p) for v in existing if (p := parse(v)) is not None]
    if not parsed:
        return DEFAULT_VERSION
    candidate = bump(max(parsed, key=lambda pair: pair[1])[0])
    while taken_by(candidate, existing) is not None:  # e.g. 1.0.1 exists although 1.0.10 is the highest
        candidate = bump(candidate)
    return candidate
