"""Reports: one self-contained HTML file with inline plots, PNG figures and CSV tables."""

from robustlab.report.html import ReportResult, Section, render, write_report

__all__ = ["ReportResult", "Section", "render", "write_report"]
