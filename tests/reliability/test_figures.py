import json

import pytest

import figures


@pytest.mark.reliability
def test_figures_are_counted_and_written(tmp_path, monkeypatch):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv(figures.REPORT_ENV, str(report))
    monkeypatch.setenv(figures.RELIABILITY_ENV, "")
    assert figures.reliability_count(3, 300) == 3
    monkeypatch.setenv(figures.RELIABILITY_ENV, "full")
    assert figures.reliability_count(3, 300) == 300
    before = len(figures.figures_recorded)
    figures.report_figures("self-check", planted=2, detected=2)
    assert figures.figures_recorded[before:] == [{"topic": "self-check", "planted": 2, "detected": 2}]
    assert json.loads(report.read_text()) == {"topic": "self-check", "planted": 2, "detected": 2}
    figures.figures_recorded.pop()
