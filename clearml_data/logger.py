"""``Logger``: what ``Dataset.get_logger()`` returns, with ClearML's ``report_*`` methods.

What is reported is kept with the version (:mod:`clearml_data.service.reports` says how and
in what shape) and read back with ``Dataset.get_reports()``; nothing is drawn here. The
parameters are ClearML's; those that only steer ClearML's web page (``extra_layout``,
``data_args``, ``max_image_history``, ...) are accepted and not used.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .service import Service

log = logging.getLogger("clearml_data.reports")


class Logger:
    """Reports on one dataset version."""

    def __init__(self, dataset_id: str, service: Service):
        self._id = dataset_id
        self._service = service

    def __repr__(self) -> str:
        return f"<Logger of dataset {self._id}>"

    def report_text(
        self, msg: str, level: int = logging.INFO, print_console: bool = True, *args: Any, **_: Any
    ) -> None:
        """Keep a line of text with the version (and log it, unless ``print_console=False``)."""
        self._service.report(self._id, "text", msg=msg, level=level)
        if print_console:
            log.log(level if isinstance(level, int) else logging.INFO, "%s", msg)

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        """One point (iteration, value) of the scalar series ``title``/``series``."""
        self._service.report(self._id, "scalar", title=title, series=series, value=value, iteration=iteration)

    def report_histogram(
        self,
        title: str,
        series: str,
        values: Any,
        iteration: int | None = None,
        labels: list[str] | None = None,
        xlabels: list[str] | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        mode: str | None = None,
        data_args: dict | None = None,
        extra_layout: dict | None = None,
    ) -> None:
        """A histogram already counted: ``values`` per bin (a list, array or pandas Series)."""
        self._service.report(
            self._id,
            "histogram",
            title=title,
            series=series,
            values=values,
            iteration=iteration,
            labels=labels,
            xlabels=xlabels,
            xaxis=xaxis,
            yaxis=yaxis,
            mode=mode,
        )

    def report_vector(
        self, title: str, series: str, values: Any, iteration: int | None = None, **kwargs: Any
    ) -> None:
        """ClearML's alias of :meth:`report_histogram`."""
        self.report_histogram(title, series, values, iteration, **kwargs)

    def report_table(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        table_plot: Any = None,
        csv: str | os.PathLike | None = None,
        url: str | None = None,
        extra_layout: dict | None = None,
        extra_data: dict | None = None,
    ) -> None:
        """A table: a pandas DataFrame or a list of rows (the first one the header) as
        ``table_plot``, a CSV file as ``csv``, or the URL of one."""
        self._service.report(
            self._id,
            "table",
            title=title,
            series=series,
            iteration=iteration,
            table_plot=table_plot,
            csv=csv,
            url=url,
        )

    def report_image(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        local_path: str | os.PathLike | None = None,
        image: Any = None,
        matrix: Any = None,
        max_image_history: int | None = None,
        delete_after_upload: bool = False,
        url: str | None = None,
    ) -> None:
        """An image: a file (PNG, JPEG, ...), a numpy array or PIL image (stored as PNG), or a URL."""
        self._service.report(
            self._id,
            "image",
            title=title,
            series=series,
            iteration=iteration,
            local_path=local_path,
            image=image,
            matrix=matrix,
            url=url,
        )
        if delete_after_upload and local_path is not None:
            os.unlink(local_path)

    def report_media(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        local_path: str | os.PathLike | None = None,
        stream: Any = None,
        file_extension: str | None = None,
        max_history: int | None = None,
        delete_after_upload: bool = False,
        url: str | None = None,
    ) -> None:
        """A media file (audio, video, anything): a local file, a stream, or a URL."""
        self._service.report(
            self._id,
            "media",
            title=title,
            series=series,
            iteration=iteration,
            local_path=local_path,
            stream=stream,
            file_extension=file_extension,
            url=url,
        )
        if delete_after_upload and local_path is not None:
            os.unlink(local_path)

    def __getattr__(self, name: str):
        # ClearML's other report_* methods (plotly, matplotlib, scatter, confusion matrix...)
        if name.startswith("report_"):
            raise AttributeError(
                f"Logger.{name} is not provided by clearml-data; a dataset's logger has "
                "report_table, report_image, report_media, report_histogram, report_scalar and report_text"
            )
        raise AttributeError(name)

    def flush(self, wait: bool = False) -> bool:
        """Reports are kept as they are made: nothing waits."""
        return True
