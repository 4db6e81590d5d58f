import json

import pytest

from clearml_data import testing


@pytest.mark.reliability
def test_figures_are_counted_and_written(tmp_path, monkeypatch):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv(testing.REPORT_ENV, str(report))
    monkeypatch.setenv(testing.RELIABILITY_ENV, "")
    assert testing.reliability_count(3, 300) == 3
    monkeypatch.setenv(testing.RELIABILITY_ENV, "full")
    assert testing.reliability_count(3, 300) == 300
    before = len(testing.figures_recorded)
    testing.report_figures("self-check", planted=2, detected=2)
    assert testing.figures_recorded[before:] == [{"topic": "self-check", "planted": 2, "detected": 2}]
    assert json.loads(report.read_text()) == {"topic": "self-check", "planted": 2, "detected": 2}
    testing.figures_recorded.pop()
