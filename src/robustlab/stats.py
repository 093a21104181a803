"""The two statistics every reported number goes through: rates with intervals, and the median.

**Rates.** A rate with its denominator and 95 % Wilson score interval is how every rate is reported.

A success rate of 0.8 means little without knowing whether it came from 5 or 5,000 images. Every rate that
robustlab prints (``--json``, tables, the report) is a :class:`Rate`: the count, the denominator, the point
estimate and the Wilson score interval, which unlike the normal approximation stays inside [0, 1] and is
informative at 0 and 1 and for small denominators (Brown, Cai & DasGupta 2001 recommend it for n < 40 and
find it competitive above).

**Median.** One convention everywhere: the average of the two middle values for an even count, as numpy,
pandas and DuckDB's ``median`` compute it (torch's ``median`` returns the lower one, so it is never used for a
reported statistic).

This module sits below every package (it imports only the standard library and torch lazily), so attacks,
metrics, analysis and the CLI share it.

References:
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA 1927.
    L. D. Brown, T. T. Cai, A. DasGupta, "Interval estimation for a binomial proportion", Stat. Sci. 2001.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: ``k`` outside ``0..n`` or a negative ``n``.
    """
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp rounding noise: the exact interval contains 0 when k == 0 and 1 when k == n.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n``, with its 95 % Wilson interval. ``value``, ``low`` and ``high`` are ``nan`` when ``n == 0``."""

    k: int
    n: int

    def __post_init__(self) -> None:
        wilson_interval(self.k, self.n)  # validates

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"value", "low", "high", "k", "n"}``; ``None`` instead of ``nan`` (valid JSON)."""
        low, high = self.interval

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {"value": clean(self.value), "low": clean(low), "high": clean(high), "k": self.k, "n": self.n}

    def __str__(self) -> str:
        """``0.800 [0.490, 0.943] (8/10)``; ``– (0/0)`` when nothing was measured."""
        if not self.n:
            return "– (0/0)"
        low, high = self.interval
        return f"{self.value:.3f} [{low:.3f}, {high:.3f}] ({self.k}/{self.n})"


def median(values: torch.Tensor | Iterable[float]) -> float | None:
    """The median, averaging the two middle values of an even count; ``None`` for no values.

    NaN values are ignored (they are "not measured"), as DuckDB ignores NULL.
    """
    import torch

    t = torch.as_tensor(values if isinstance(values, torch.Tensor) else list(values), dtype=torch.float64).flatten()
    t = t[~torch.isnan(t)]
    n = t.numel()
    if n == 0:
        return None
    s = t.sort().values
    mid = n // 2
    return float(s[mid]) if n % 2 else float((s[mid - 1] + s[mid]) / 2)


def format_number(value: Any, missing: str = "–") -> str:
    """A number for a table cell: 4 significant digits for floats, ``missing`` for none or nan, ``str`` otherwise.

    The one formatter of the report's cells and the CLI's tables.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.4g}" if isinstance(value, float) else str(value)
