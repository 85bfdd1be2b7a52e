"""``sporeprint report``: one self-contained HTML page of what a store holds and how its
runs and scored batches did, led by the safety of the batch's answers.

``build`` chooses the inputs and assembles the page; ``sections/`` has one module per
section; ``figures`` draws them (matplotlib), ``page`` writes the HTML.

>>> from sporeprint.report import build_report, ReportOptions
>>> with FeatureStore("fungi.duckdb", read_only=True) as fs:          # doctest: +SKIP
...     print(build_report(fs, "report.html", ReportOptions(map_points=1000)).lines())
"""

from .build import ReportOptions, ReportSummary, build_report, truth_confusion

__all__ = ["ReportOptions", "ReportSummary", "build_report", "truth_confusion"]
