"""Batched reverse-Weibull fits with Kolmogorov–Smirnov selection: the extreme-value step of CLEVER.

The reference CLEVER code fits each series of per-batch gradient-norm maxima with
``scipy.stats.weibull_min.fit(-rescaled, c0, optimizer=scipy.optimize.fmin)`` for several initial shapes
``c0``, runs ``scipy.stats.kstest`` on every fit and keeps the one with the best p-value. Done one series at a
time that is tens of thousands of Python-level likelihood evaluations per input and target.

This module runs the *same* computation for every series and every initial shape at once: the same penalised
negative log-likelihood as ``rv_continuous._penalized_nnlf`` (evaluated by scipy's own ``weibull_max``
log-density), the same starting point as ``rv_continuous._fitstart``, and a vectorised copy of scipy's
Nelder–Mead (``scipy.optimize.fmin``: same initial simplex, coefficients, sort order, tolerances and
function-evaluation budget), so each problem follows the path scipy would take on its own; the tests check
that against scipy directly. The K–S test is scipy's exact two-sided one (``kstwo``). scipy is imported on
first use (``scipy.stats`` takes seconds to import; ``import robustlab`` should not).

Fitting ``weibull_max`` to ``x`` is the mirror image of fitting ``weibull_min`` to ``-x`` (the reference
code's formulation): same likelihood, same simplex moves, location negated.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Initial shape values tried by the reference implementation (``clever.py``: ``c_init``).
FIT_SHAPES: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: Below this best p-value the reference code calls the samples ill-conditioned and uses their maximum.
FALLBACK_PVALUE = 1e-3
#: Below this best p-value a fit is flagged as poor (the K–S test rejects it at the 5 % level).
POOR_FIT_PVALUE = 0.05
#: A series whose spread is below this fraction of its maximum is treated as constant.
DEGENERATE_RTOL = 1e-9
#: An accepted fit whose location lies more than this many sample ranges above the sample maximum has
#: diverged: the maxima look unbounded (a near-Gumbel fit, shape ≳ 250) and the location is no estimate of a
#: maximum. Plain maximum likelihood does this often on few batches (the reason for the reference's
#: regularised fit); the location is kept, the fit flagged.
DIVERGED_RANGES = 100.0

STATUS_OK = "ok"
STATUS_POOR = "poor"
STATUS_FALLBACK = "fallback"
STATUS_DEGENERATE = "degenerate"
STATUS_NONFINITE = "nonfinite"
STATUS_DIVERGED = "diverged"
#: Statuses whose location is not a trustworthy estimate from an accepted Weibull fit.
POOR_STATUSES = frozenset({STATUS_POOR, STATUS_FALLBACK, STATUS_NONFINITE, STATUS_DIVERGED})

_LOGXMAX = float(np.log(np.finfo(float).max))  # scipy.stats._constants._LOGXMAX
_NM_RHO, _NM_CHI, _NM_PSI, _NM_SIGMA = 1.0, 2.0, 0.5, 0.5  # scipy's Nelder–Mead coefficients
_NM_NONZDELT, _NM_ZDELT = 0.05, 0.00025
_NM_XATOL = _NM_FATOL = 1e-4  # fmin's xtol / ftol defaults
_A_EXPAND, _B_EXPAND = 1 + _NM_RHO * _NM_CHI, _NM_RHO * _NM_CHI
_A_OUTSIDE, _B_OUTSIDE = 1 + _NM_PSI * _NM_RHO, _NM_PSI * _NM_RHO
_A_INSIDE, _B_INSIDE = 1 - _NM_PSI, -_NM_PSI  # x - (-b) w == x + b w exactly

Array = NDArray[np.float64]


@dataclass(frozen=True)
class WeibullFit:
    """Best reverse-Weibull fit of each series (``weibull_max(shape, location, scale)``).

    Attributes:
        shape: Shape ``c`` (``inf`` for a constant series: a point mass).
        location: Right end of the support: the extreme-value estimate of the series' maximum. For
            ``"fallback"``, ``"degenerate"`` and ``"nonfinite"`` it is the largest observed value (``nan`` if that
            is not finite).
        scale: Scale (``0`` for a constant series).
        ks_statistic: K–S distance between the series and the fitted distribution.
        ks_pvalue: Its exact two-sided p-value (``1`` for a constant series, ``nan`` if no fit succeeded).
        init_shape: The initial shape whose fit was kept (``nan`` when no fit was kept).
        status: ``"ok"``, ``"poor"`` (p < :data:`POOR_FIT_PVALUE`), ``"diverged"`` (location more than
            :data:`DIVERGED_RANGES` sample ranges above the maximum), ``"fallback"`` (p < :data:`FALLBACK_PVALUE` or
            no valid fit: location = maximum), ``"degenerate"`` (constant series: location = the constant) or
            ``"nonfinite"`` (the series holds NaN or inf).

    Shape:
        Every array: ``(M,)`` for ``M`` series.
    """

    shape: Array
    location: Array
    scale: Array
    ks_statistic: Array
    ks_pvalue: Array
    init_shape: Array
    status: NDArray[np.str_]


def fit_reverse_weibull(maxima: Array, shapes: Sequence[float] = FIT_SHAPES, scale_reg: float = 0.0) -> WeibullFit:
    """Fit ``weibull_max`` to each row of ``maxima`` from every initial shape; keep the best K–S p-value.

    Like the reference code, each series is first shifted by its maximum and divided by its range (this
    conditions the likelihood), fitted, and the parameters mapped back; the K–S test runs on the original
    values. Ties in p-value go to the earlier initial shape.

    Args:
        maxima: One series of per-batch maxima per row.
        shapes: Initial shape values (each > 0).
        scale_reg: Weight of the penalty ``scale_reg * scale**2`` (scale of the rescaled fit) added to the negative
            log-likelihood: the reference code's ``mle_reg`` method (``fmin_with_reg``, weight 0.01), which keeps
            Nelder–Mead from diverging to huge parameters. ``0`` is plain maximum likelihood.

    Returns:
        The kept fit of each series.

    Shape:
        - maxima: ``(M, B)`` with ``B`` batches per series
        - every output array: ``(M,)``

    References:
        Weng et al., "Evaluating the Robustness of Neural Networks: An Extreme Value Theory Approach"
        (CLEVER), ICLR 2018; reference code ``huanzhang12/CLEVER``, ``clever.py`` (``get_best_weibull_fit``).
    """
    data = np.asarray(maxima, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"maxima must have shape (M, B) with B >= 2, got {data.shape}")
    c0 = np.asarray(shapes, dtype=np.float64)
    m = data.shape[0]
    s = c0.size

    finite = np.isfinite(data).all(axis=1)
    top = data.max(axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf in non-finite rows, which are not fitted
        spread = top - data.min(axis=1)
        degenerate = finite & (spread <= DEGENERATE_RTOL * np.abs(top))
    fit_rows = np.flatnonzero(finite & ~degenerate)

    shape = np.full(m, np.nan)
    location = np.where(finite, top, np.nan)
    scale = np.full(m, np.nan)
    ks_d = np.full(m, np.nan)
    pvalue = np.full(m, np.nan)
    init = np.full(m, np.nan)
    status = np.full(m, STATUS_NONFINITE, dtype=object)

    shape[degenerate], scale[degenerate] = np.inf, 0.0
    ks_d[degenerate], pvalue[degenerate] = 0.0, 1.0
    status[degenerate] = STATUS_DEGENERATE

    if fit_rows.size:
        sub = data[fit_rows]  # (F, B)
        shift = sub.max(axis=1, keepdims=True)
        rng = shift - sub.min(axis=1, keepdims=True)
        rescaled = (sub - shift) / rng  # (F, B) in [-1, 0]
        f = fit_rows.size
        problems = np.repeat(rescaled, s, axis=0)  # (F*S, B), shapes vary fastest
        loc0, scale0 = _fitstart(problems)
        x0 = np.stack([np.tile(c0, f), loc0, scale0], axis=1)  # (F*S, 3)
        theta = _fmin(x0, problems, scale_reg)
        c, loc_r, scale_r = theta[:, 0], theta[:, 1], theta[:, 2]
        valid = (c > 0) & (scale_r > 0) & np.isfinite(theta).all(axis=1)  # scipy raises FitError otherwise
        loc = np.repeat(shift[:, 0], s) + loc_r * np.repeat(rng[:, 0], s)
        scl = scale_r * np.repeat(rng[:, 0], s)
        d = _ks_statistic(np.repeat(sub, s, axis=0), c, loc, scl)
        d = np.where(valid & np.isfinite(d), d, np.nan).reshape(f, s)
        p = _best_pvalues(d, sub.shape[1])
        any_p = ~np.isnan(p).all(axis=1)
        best = np.where(np.isnan(p), -np.inf, p).argmax(axis=1)  # the first maximum, as list.index(max) does
        rows = np.arange(f)
        best_p = p[rows, best]
        accepted = any_p & (best_p >= FALLBACK_PVALUE)
        sel = best + rows * s
        out = fit_rows[accepted]
        shape[out] = c[sel][accepted]
        location[out] = loc[sel][accepted]
        scale[out] = scl[sel][accepted]
        ks_d[out] = d[rows, best][accepted]
        pvalue[out] = best_p[accepted]
        init[out] = c0[best][accepted]
        status[out] = np.where(best_p[accepted] < POOR_FIT_PVALUE, STATUS_POOR, STATUS_OK)
        far = (location[out] - top[out]) > DIVERGED_RANGES * spread[out]
        status[out[far]] = STATUS_DIVERGED
        rejected = fit_rows[~accepted]  # reference: "ill-conditioned samples. Using maximum sample value."
        pvalue[rejected] = np.where(any_p, best_p, np.nan)[~accepted]
        ks_d[rejected] = np.where(any_p, d[rows, best], np.nan)[~accepted]
        status[rejected] = STATUS_FALLBACK
    return WeibullFit(shape, location, scale, ks_d, pvalue, init, status.astype(str))


# -- scipy's objective, start and optimiser, vectorised over problems --------------------------------------------


def _nnlf(theta: Array, data: Array, scale_reg: float = 0.0) -> Array:
    """``weibull_max._penalized_nnlf`` for each row: out-of-support or non-finite terms cost ``100 log(xmax)``;
    plus ``scale_reg * scale**2`` (the reference code's ``fmin_with_reg``, applied as it does after the likelihood).
    Call it under ``np.errstate(all="ignore")``: invalid values are expected and masked.

    Shape:
        - theta: ``(P, 3)`` as (shape, loc, scale); data: ``(P, B)``
        - output: ``(P,)``
    """
    xlogy = _xlogy()
    c, scale = theta[:, 0:1], theta[:, 2:3]
    negx = (theta[:, 1:2] - data) / scale  # (P, B): -x, bit for bit (a - b == -(b - a) in IEEE arithmetic)
    # weibull_max._logpdf(x, c) = log(c) + xlogy(c - 1, -x) - (-x)**c, the same operations in the same order
    logpdf = np.log(c) + xlogy(c - 1, negx) - np.power(negx, c)  # NaN outside the support, masked below
    good = (negx >= 0.0) & np.isfinite(logpdf)  # support x <= 0; NaN is outside
    total = np.where(good, logpdf, 0.0).sum(axis=1)
    b = data.shape[1]
    n_bad = b - good.sum(axis=1)  # a ufunc reduction: np.count_nonzero's Python wrapper costs more here
    out: Array = -total + _penalty(b)[n_bad] + b * np.log(scale[:, 0])
    out[~((c[:, 0] > 0) & (scale[:, 0] > 0))] = np.inf  # _argcheck and scale > 0
    if scale_reg:
        out += scale_reg * theta[:, 2] * theta[:, 2]
    return out


@functools.cache
def _xlogy() -> np.ufunc:
    """``scipy.special.xlogy``, imported on first use (an import statement per call costs more than the call)."""
    from scipy.special import xlogy

    result: np.ufunc = xlogy
    return result


@functools.cache
def _penalty(b: int) -> Array:
    """``n_bad * _LOGXMAX * 100`` for ``n_bad = 0..b``, as scipy computes it."""
    return np.asarray(np.arange(b + 1) * _LOGXMAX * 100, dtype=np.float64)


def _fitstart(data: Array) -> tuple[Array, Array]:
    """``weibull_max._fitstart``: moment estimates for shape 1, moved right of the data if needed.

    Shape:
        - data: ``(P, B)``
        - outputs: ``(P,)`` each
    """
    from scipy import stats

    mu, mu2 = (float(v) for v in stats.weibull_max.stats(1.0, moments="mv"))
    muhat, mu2hat = data.mean(axis=1), data.var(axis=1)
    with np.errstate(all="ignore"):
        shat = np.sqrt(mu2hat / mu2)
        lhat = muhat - shat * mu
    lhat = np.where(np.isfinite(lhat), lhat, 0.0)
    shat = np.where(np.isfinite(shat) & (shat > 0), shat, 1.0)
    lo, hi = data.min(axis=1), data.max(axis=1)
    fits = hi < lhat  # support (-inf, lhat] must contain the data
    return np.where(fits, lhat, hi + 0.1 * (hi - lo)), np.where(fits, shat, 1.0)


def _fmin(x0: Array, data: Array, scale_reg: float = 0.0) -> Array:
    """``scipy.optimize.fmin(nnlf, x0, args=(data,), disp=0)`` for every row at once.

    Each problem keeps its own simplex and call counter and takes exactly the branch scipy
    would take (including where the call budget runs out mid-iteration); a problem leaves the working set when
    it has converged or spent ``200 * n`` calls or iterations. The problems are small, so an iteration's cost is
    the number of array operations, not their size: every iteration evaluates, in one stacked call, the
    reflection *and* the three points that may follow it (expansion, outside and inside contraction), then
    keeps the one scipy's branch would have evaluated. Only calls scipy would make are counted, and each value
    is bit for bit what a call on that point alone returns, so the path is scipy's.

    Shape:
        - x0: ``(P, n)``; data: ``(P, B)``
        - output: ``(P, n)``
    """
    with np.errstate(all="ignore"):  # NaN / inf values are part of the objective's contract
        return _fmin_loop(x0, data, scale_reg)


def _fmin_loop(x0: Array, data: Array, scale_reg: float) -> Array:
    p, n = x0.shape
    maxfun = 200 * n  # and maxiter, implied
    sim = np.repeat(x0[:, None, :], n + 1, axis=1)  # (P, n+1, n)
    for k in range(n):
        col = sim[:, k + 1, k]
        sim[:, k + 1, k] = np.where(col != 0, (1 + _NM_NONZDELT) * col, _NM_ZDELT)
    fsim = _nnlf(sim.reshape(-1, n), np.repeat(data, n + 1, axis=0), scale_reg).reshape(p, n + 1)
    s, fs = _sort(sim, fsim)
    out = np.empty((p, n))
    idx = np.arange(p)  # the working set
    d4 = np.concatenate([data] * 4)  # its data, once per candidate point
    calls = np.full(p, n + 1)
    # candidate k is a_k * xbar - b_k * worst: reflection, expansion, outside and inside contraction
    a4 = np.array([1 + _NM_RHO, _A_EXPAND, _A_OUTSIDE, _A_INSIDE])[:, None, None]
    b4 = np.array([_NM_RHO, _B_EXPAND, _B_OUTSIDE, _B_INSIDE])[:, None, None]

    while idx.size:
        # fs is sorted, so max |fs[0] - fs[j]| = fs[-1] - fs[0] (NaN sorts last and fails the test, as in
        # scipy); the iteration cap is implied by the call cap (calls >= iterations + 3, both capped at 200 n)
        converged = (np.abs(s[:, 1:] - s[:, :1]).max(axis=(1, 2)) <= _NM_XATOL) & (fs[:, -1] - fs[:, 0] <= _NM_FATOL)
        done = converged | (calls >= maxfun)
        if done.any():
            out[idx[done]] = s[done, 0]
            keep = ~done
            idx, s, fs, calls = idx[keep], s[keep], fs[keep], calls[keep]
            if not idx.size:
                break
            d4 = d4.reshape(4, -1, d4.shape[-1])[:, keep].reshape(-1, d4.shape[-1])
        m = idx.size

        xbar = s[:, :-1].sum(axis=1) / n  # np.add.reduce over the n best vertices
        worst = s[:, -1]
        cand = a4 * xbar - b4 * worst  # (4, m, n); row 0 is scipy's (1 + rho) xbar - rho w, the others its
        fcand = _nnlf(cand.reshape(-1, n), d4, scale_reg).reshape(4, m)  # a * xbar - b * w, the same values
        xr, fxr = cand[0], fcand[0]
        calls += 1  # the reflection: always within budget (checked above)
        expand = fxr < fs[:, 0]
        accept_r = ~expand & (fxr < fs[:, -2])
        contract = ~expand & ~accept_r
        outside = contract & (fxr < fs[:, -1])
        second = expand | contract
        allowed = second & (calls < maxfun)
        aborted = second & ~allowed  # scipy's _MaxFuncCallError: the rest of the iteration is skipped

        which = np.where(expand, 1, np.where(outside, 2, 3))  # the point scipy evaluates next, if any
        rows = np.arange(m)
        point = cand[which, rows]
        f2 = np.where(allowed, fcand[which, rows], np.inf)
        calls += allowed
        better_e = f2 < fxr
        take_r = accept_r | (allowed & expand & ~better_e)
        take_c = (outside & (f2 <= fxr)) | (contract & ~outside & (f2 < fs[:, -1]))
        take_2 = allowed & ((expand & better_e) | take_c)
        replace = take_r | take_2
        s[replace, -1] = np.where(take_r[:, None], xr, point)[replace]
        fs[replace, -1] = np.where(take_r, fxr, f2)[replace]

        shrink = allowed & contract & ~take_2
        if shrink.any():
            d = d4[:m]
            for j in range(1, n + 1):  # vertex by vertex, as scipy does (the budget may run out midway)
                go = np.flatnonzero(shrink & ~aborted)
                s[go, j] = s[go, 0] + _NM_SIGMA * (s[go, j] - s[go, 0])
                ok = go[calls[go] < maxfun]
                aborted[go[calls[go] >= maxfun]] = True
                if ok.size:
                    fs[ok, j] = _nnlf(s[ok, j], d[ok], scale_reg)
                calls[ok] += 1

        s, fs = _sort(s, fs)
    return out


def _sort(sim: Array, fsim: Array) -> tuple[Array, Array]:
    """Order each simplex by function value (``np.argsort``, as scipy does per problem)."""
    ind = np.argsort(fsim, axis=1)
    rows = np.arange(fsim.shape[0])[:, None]
    return sim[rows, ind], fsim[rows, ind]


def _ks_statistic(data: Array, c: Array, loc: Array, scale: Array) -> Array:
    """Two-sided one-sample K–S statistic of each row against ``weibull_max(c, loc, scale)``, computed as
    scipy's ``ks_1samp`` does.

    Shape:
        - data: ``(P, B)``; c, loc, scale: ``(P,)``
        - output: ``(P,)`` (``nan`` where a parameter is invalid)
    """
    from scipy import stats

    n = data.shape[1]
    x = np.sort(data, axis=1)
    with np.errstate(all="ignore"):
        cdf = stats.weibull_max.cdf(x, c[:, None], loc=loc[:, None], scale=scale[:, None])
        d_plus = (np.arange(1.0, n + 1) / n - cdf).max(axis=1)
        d_minus = (cdf - np.arange(0.0, n) / n).max(axis=1)
    result: Array = np.where(d_plus > d_minus, d_plus, d_minus)
    return result


def _best_pvalues(d: Array, n: int) -> Array:
    """Exact K–S p-values (``scipy.stats.kstwo.sf``, what ``kstest`` uses) where they can decide the selection.

    The p-value falls as the statistic grows, so the best fit of a row is among those with the smallest
    statistic; only those (and, when that p-value saturates at 1, every candidate) are evaluated, which picks
    the same fit as evaluating all of them, at a fraction of the cost (``kstwo.sf`` is not vectorised).

    Shape:
        - d: ``(F, S)`` statistics, ``nan`` for failed fits
        - output: ``(F, S)`` p-values, ``nan`` where not evaluated
    """
    from scipy import stats

    p = np.full(d.shape, np.nan)
    finite = np.isfinite(d)
    dmin = np.where(finite, d, np.inf).min(axis=1, keepdims=True)
    todo = finite & (d <= dmin + 1e-12)
    p[todo] = np.clip(stats.kstwo.sf(d[todo], n), 0.0, 1.0)
    saturated = (np.where(todo, p, 0.0) >= 1.0).any(axis=1, keepdims=True)
    more = finite & saturated & ~todo
    if more.any():
        p[more] = np.clip(stats.kstwo.sf(d[more], n), 0.0, 1.0)
    return p
