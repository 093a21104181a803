"""The report: one self-contained HTML file, rendered in headless Chromium with every plot drawn, and read back
as a reader sees it (every rate with its interval, no null cells, the class-size warning)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from robustlab.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A rate as the report writes it: value [95 % interval] (k/n), or a dash with 0/0 when nothing was measured.
INTERVAL = re.compile(r"(\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \((\d+)/(\d+)\)|– \(0/0\))")
#: Column headers that announce rates (the summary's attack columns are abbreviated A1, A2, ...).
RATE_HEADER = re.compile(r"rate|accuracy|error|^A\d+$|target \(column\)", re.IGNORECASE)
#: What a cell must never say.
NULLISH = re.compile(r"\b(null|None|nan|NaN|undefined)\b")


def test_report_files(four_model_run: tuple[Path, Any], tmp_path: Path) -> None:
    run, _ = four_model_run
    result = write_report(run, tmp_path)
    html = result.html.read_text()
    # self-contained: no external script, stylesheet or image
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?:", html)
    from robustlab.analysis import analyse_run

    a = analyse_run(run)
    assert len(a["attack"].pareto) == 2  # ifgsm minimal and C&W give distortions
    norms = {r["norm"] for r in a["attack"].rows if r["key"] in a["attack"].distortion_keys()}
    assert norms == {"l2", "linf"}
    # success, one distortion figure per norm, transfer heatmaps, frontiers, class-wise accuracy + confusion per
    # perturbation, corruptions
    assert result.n_plots == 1 + len(norms) + len(a["transfer"]) + len(a["attack"].pareto) + 2 * len(a.classwise) + 1
    assert len(result.figures) == result.n_plots and all(p.stat().st_size > 5000 for p in result.figures)
    assert {p.name for p in result.figures} >= {"distortion_l2.png", "distortion_linf.png"}
    assert {p.name for p in result.tables} >= {"clean.csv", "attacks.csv", "corruption_accuracy.csv"}
    for model in "abcd":
        assert f"make_{model}" in html
    # the summary puts each model's corruption error and mCE next to its clean accuracy (issue 15)
    summary = html[html.index('id="summary"') : html.index("</table>", html.index('id="summary"'))]
    assert "corruption error" in summary and ">mCE<" in summary and "clean accuracy" in summary


def _chromium(args: list[str], profile: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


class _Page(HTMLParser):
    """A rendered page as a reader sees it: its tables (header and cell texts), every ``.rate`` element's text
    and every visible text node (script and style contents left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.rates: list[str] = []
        self.texts: list[str] = []
        self._skip = 0
        self._cell: list[str] | None = None
        self._rate: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if "rate" in (dict(attrs).get("class") or "").split():
            self._rate = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "span" and self._rate is not None:
            self.rates.append(" ".join("".join(self._rate).split()))
            self._rate = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.texts.append(data)
        for part in (self._cell, self._rate):
            if part is not None:
                part.append(data)


def _rate_cells(tables: list[list[list[str]]]) -> list[str]:
    """The cells of every column whose header announces a rate (a whole table when its first header does)."""
    cells = []
    for table in tables:
        header, *rows = table
        whole = bool(RATE_HEADER.search(header[0]))
        for row in rows:
            for j, cell in enumerate(row):
                if j and j < len(header) and (whole or RATE_HEADER.search(header[j])):
                    cells.append(cell)
    return cells


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (CI installs it)")
def test_report_renders_in_headless_chromium(four_model_run: tuple[Path, Any], tmp_path: Path) -> None:
    run, _ = four_model_run
    result = write_report(run, tmp_path, png=False)
    profile = tmp_path / "profile"
    dom = _chromium(["--dump-dom", result.html.as_uri()], profile).stdout
    # plotly replaces each placeholder div with an SVG-rendered plot ("main-svg") once its JavaScript ran
    assert dom.count('class="main-svg"') >= result.n_plots, dom[:500]
    shot = tmp_path / "report.png"
    _chromium(["--window-size=1280,2400", f"--screenshot={shot}", result.html.as_uri()], profile, check=True)
    assert shot.stat().st_size > 20_000

    page = _Page()
    page.feed(dom)
    # Every rate a reader sees carries its 95 % interval and its counts: the cells of every rate column, and
    # every element the report marks as a rate.
    cells = _rate_cells(page.tables)
    missing = [c for c in cells if c and not INTERVAL.search(c)]
    assert not missing, missing[:10]
    assert len(cells) >= 4 * 40  # summary, per-model, class-wise, transfer and corruption tables all counted
    assert page.rates, "the report marks its rates"
    assert [r for r in page.rates if not INTERVAL.fullmatch(r)] == []
    for m in INTERVAL.finditer(" ".join(page.rates)):
        if m.group(2) is not None:
            assert int(m.group(2)) <= int(m.group(3))
    # No cell, label or heatmap text (plotly draws cell texts as SVG text) says null, None or nan.
    text = " ".join(page.texts)
    assert not NULLISH.search(text), NULLISH.findall(text)[:5]
    # The study draws 24 random images, so every class has fewer than 20: the class-wise section says so.
    assert "fewer than 20 images" in text
    # Config keys are shown readably; a hashed key appears only where the legend explains its hash.
    hashed = sorted(set(re.findall(r"\bcw-[\w./-]+?-[0-9a-f]{6}\b", text)))
    assert hashed and "cw-l2-s10-untargeted (search_steps=2)" in text
    for key in hashed:
        assert text.count(key) == 1 and "its last part is a hash of the params" in text
