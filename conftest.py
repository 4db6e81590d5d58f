"""Shared by every test suite in this repository (the core's and the plugins')."""


def pytest_terminal_summary(terminalreporter):
    from clearml_data.testing import figures_recorded

    if figures_recorded:
        terminalreporter.section("reliability figures")
        for record in figures_recorded:
            rest = ", ".join(f"{k}={v}" for k, v in record.items() if k != "topic")
            terminalreporter.write_line(f"{record['topic']}: {rest}")
