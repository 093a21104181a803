"""The report: one self-contained HTML file, rendered in headless Chromium with every plot drawn."""

from __future__ import annotations

import re
import shutil
import subprocess
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


def test_report_files(four_model_run: tuple[Path, Any], tmp_path: Path) -> None:
    run, _ = four_model_run
    result = write_report(run, tmp_path)
    html = result.html.read_text()
    # self-contained: no external script, stylesheet or image
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?:", html)
    from robustlab.analysis import analyse_run

    a = analyse_run(run)
    assert len(a["attack"].pareto) == 2  # ifgsm minimal and C&W give distortions
    # success, distortion, transfer heatmaps, frontiers, class-wise accuracy + confusion per perturbation, corruptions
    assert result.n_plots == 2 + len(a["transfer"]) + len(a["attack"].pareto) + 2 * len(a.classwise) + 1
    assert len(result.figures) == result.n_plots and all(p.stat().st_size > 5000 for p in result.figures)
    assert {p.name for p in result.tables} >= {"clean.csv", "attacks.csv"}
    for model in "abcd":
        assert f"make_{model}" in html


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (CI installs it)")
def test_report_renders_in_headless_chromium(four_model_run: tuple[Path, Any], tmp_path: Path) -> None:
    run, _ = four_model_run
    result = write_report(run, tmp_path, png=False)
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            result.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # plotly replaces each placeholder div with an SVG-rendered plot ("main-svg") once its JavaScript ran
    assert dom.count('class="main-svg"') >= result.n_plots, dom[:500]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            result.html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000
