"""docs/streaming.md runs: its Python examples, in order, as one script, against a fresh
catalog, storage and cache (the integrations' section at its end is left to its own tests)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "streaming.md"
LAST_SECTION = "## With pandas, Arrow, Dask, Hugging Face datasets and PyTorch"


def examples() -> list[str]:
    text = PAGE.read_text(encoding="utf-8").split(LAST_SECTION)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_page_keeps_the_section_for_the_libraries():
    assert LAST_SECTION in PAGE.read_text(encoding="utf-8")


def test_the_examples_run_in_order(env, tmp_path, monkeypatch):
    blocks = examples()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)  # the page's own examples
    printed = out.getvalue()
    ds = namespace["ds"]
    assert f"{ds.url}\n" in printed
    assert "clearml-data://zoo/mammals/pets@latest/labels.csv\n" in printed
    assert "zoo/mammals pets latest labels.csv\n" in printed
    assert "51\n" in printed and "b'dog\\n'\n" in printed and "a cat\n" in printed
    assert f"['{ds.id}/train/cat', '{ds.id}/train/dog']\n" in printed
    assert "['labels.csv', 'train']\n" in printed and "b'a dog'\n" in printed
