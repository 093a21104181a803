"""Reports: one self-contained HTML file with inline plots, PNG figures and CSV tables."""

from robustlab.report.html import ReportResult, write_report

__all__ = ["ReportResult", "write_report"]
