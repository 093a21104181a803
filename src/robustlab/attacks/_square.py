"""Square Attack: a score-based black-box attack that only queries the model's logits (no gradient).

Each iteration changes the current best point on one random square window and keeps the change if the loss went
down (or the point is fooled). The window side shrinks with the schedule :func:`p_selection`; a point that is
fooled stops querying. L∞: the window is moved to a random vertex of the eps-ball (one sign per channel), starting
from vertical stripes. L2: mass is moved from a second window into the first one in the shape of the
:func:`eta_pattern` (nested rectangles, one half positive and one half negative), starting from a 5 x 5 grid of
such patterns.

Two sources of randomness (:class:`SquareConfig` ``reference_rng``):

- Ours (default): every point has its own window positions and signs, drawn by a counter-based hash of the
  seed, the point's global index, the restart and the iteration. A point's attack therefore does not depend on
  the batch size or on which other points share its batch, and every position ``0 ... H - s`` can be drawn.
- The reference's protocol (``reference_rng=True``): one window position, one set of channel signs (L∞) and one
  transposition of the pattern (L2) per iteration, shared by the whole batch, drawn from a private generator seeded
  like the reference seeds its global one and consumed in the reference's order (``fra31/auto-attack``
  ``square.py``, also PyPI ``pyautoattack`` 0.2.0). With the same seed, batch and model it spends the same queries
  on every point as the reference; it depends on the batch composition exactly as the reference does.

References:
    Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box adversarial attack
    via random search", ECCV 2020 (arXiv 1912.00049).
    Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020 (AutoAttack: margin loss, p_init 0.8, 5000 queries, no rescaled schedule).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext, _apply_params
from robustlab.attacks._state import ActiveRows
from robustlab.errors import ConfigError
from robustlab.threat.losses import other_max

#: The iteration thresholds of the p schedule and the divisor of p_init after each (p_init up to 10, /2 up to 50 ...).
SCHEDULE: tuple[tuple[int, int], ...] = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)
#: The divisor beyond the last threshold.
LAST_DIVISOR = 512


@dataclass(frozen=True)
class SquareConfig:
    """Settings of the Square Attack (the defaults are AutoAttack's).

    Attributes:
        queries: Iterations per restart; each costs one forward pass per point not yet fooled (plus one for the
            starting point).
        p_init: Initial fraction of the image a window covers (its area is ``p * H * W``).
        restarts: Runs; each later run starts afresh on the points not yet fooled.
        loss: ``"margin"`` (``z_y - max_{k != y} z_k``, minimised) or ``"ce"`` (cross-entropy, maximised).
        rescale_schedule: Stretch the p schedule (written for 10,000 iterations) to ``queries``; AutoAttack does
            not (``resc_schedule=False``), so with 5,000 queries p ends at p_init / 128.
        reference_rng: The reference's randomness: batch-shared windows and its generator order (module docs).
    """

    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    loss: str = "margin"
    rescale_schedule: bool = False
    reference_rng: bool = False


def p_selection(it: int, p_init: float, queries: int, rescale: bool) -> float:
    """The window fraction p at iteration ``it`` (0-based): p_init until iteration 10, then halved at 50, 200,
    500, 1000, 2000, 4000, 6000 and 8000 (each threshold still belongs to the earlier phase).

    Args:
        it: Iteration index.
        p_init: The initial p.
        queries: Iterations per restart (only used with ``rescale``).
        rescale: Map ``it`` to ``int(it / queries * 10000)`` first, so that the whole schedule fits ``queries``.
    """
    if rescale:
        it = int(it / queries * 10000)
    for threshold, divisor in SCHEDULE:
        if it <= threshold:
            return p_init / divisor
    return p_init / LAST_DIVISOR


def window_side(p: float, c: int, h: int, w: int, norm: str) -> int:
    """Side of the square window for fraction ``p`` of an image of ``c`` channels and ``h`` x ``w`` pixels.

    ``round(sqrt(p * h * w))`` (Python's rounding, half to even), at least 1 for L∞ and at least 3 and odd for
    L2, and never larger than the image's shorter side.
    """
    s = round(math.sqrt(p * (c * h * w) / c))
    if norm == "l2":
        s = max(s, 3)
        s += 1 - s % 2
    else:
        s = max(s, 1)
    return min(s, h, w)


def _rectangles(a: int, b: int) -> Tensor:
    """Nested rectangles on an ``a`` x ``b`` grid: each cell gets ``sum_{r >= ring} 1/(r+1)^2`` (ring = Chebyshev
    distance to the centre cell ``(a // 2, b // 2)``), summed in float32 from the inner ring out, then
    L2-normalised.

    Shape:
        - output: ``(a, b)`` float32
    """
    ring = torch.maximum(
        (torch.arange(a) - a // 2).abs()[:, None],
        (torch.arange(b) - b // 2).abs()[None, :],
    )
    out = torch.zeros(a, b)
    for r in range(max(a // 2, b // 2) + 1):
        weight = 1.0 / torch.tensor([float((r + 1) ** 2)])
        out = out + torch.where(ring <= r, weight, torch.zeros(()))
    if out.numel():
        out = out / (out**2).sum(dim=(0, 1), keepdim=True).sqrt()
    return out


def eta_pattern(s: int) -> Tensor:
    """The L2 window pattern of side ``s``: nested rectangles, positive in the top ``s // 2`` rows and negative
    below, with unit L2 norm (the reference's ``meta_pseudo_gaussian_pert`` / ``eta``, before its random
    transposition).

    Shape:
        - output: ``(s, s)`` float32
    """
    pattern = torch.cat([_rectangles(s // 2, s), -1.0 * _rectangles(s - s // 2, s)])
    return pattern / (pattern**2).sum(dim=(0, 1), keepdim=True).sqrt()


def grid_cells(h: int, w: int) -> tuple[int, list[tuple[int, int]]]:
    """The L2 starting grid: side ``s = min(h, w) // 5`` (at least 1) and the top-left corners of the cells,
    row by row; ``size // s`` cells per axis, centred. For square images with ``size % 5 < s`` (28, 32, 64, 224
    pixels ...) these are the reference's 5 x 5 cells; elsewhere the reference's grid leaves the image or crashes.
    """
    s = max(min(h, w) // 5, 1)

    def starts(size: int) -> list[int]:
        n = size // s
        return [(size - n * s) // 2 + k * s for k in range(n)]

    return s, [(vh, vw) for vh in starts(h) for vw in starts(w)]


class Window:
    """One ``s`` x ``s`` window per row: the same for the whole batch (``vh``, ``vw`` ints) or one per row
    (``(n,)`` int64 tensors).

    Shape:
        - t (read/write): ``(n, C, H, W)``; window values: ``(n, C, s, s)``
    """

    def __init__(self, vh: int | Tensor, vw: int | Tensor, s: int) -> None:
        self.vh, self.vw, self.s = vh, vw, s

    def mask(self, h: int, w: int, like: Tensor) -> Tensor:
        """1 inside the window, 0 outside. Shape: ``(n or 1, 1, H, W)``, dtype of ``like``."""
        if isinstance(self.vh, int) and isinstance(self.vw, int):
            m = like.new_zeros(1, 1, h, w)
            m[:, :, self.vh : self.vh + self.s, self.vw : self.vw + self.s] = 1.0
            return m
        vh, vw = torch.as_tensor(self.vh), torch.as_tensor(self.vw)
        rows = torch.arange(h, device=like.device)[None, :]
        cols = torch.arange(w, device=like.device)[None, :]
        in_h = (rows >= vh[:, None]) & (rows < vh[:, None] + self.s)  # (n, H)
        in_w = (cols >= vw[:, None]) & (cols < vw[:, None] + self.s)  # (n, W)
        return (in_h[:, :, None] & in_w[:, None, :])[:, None].to(like.dtype)

    def _index(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        offsets = torch.arange(self.s, device=device)
        vh, vw = torch.as_tensor(self.vh, device=device), torch.as_tensor(self.vw, device=device)
        ys = (vh[:, None] + offsets)[:, :, None]  # (n, s, 1)
        xs = (vw[:, None] + offsets)[:, None, :]  # (n, 1, s)
        return torch.arange(n, device=device)[:, None, None], ys, xs

    def read(self, t: Tensor) -> Tensor:
        """The window's contents, ``(n, C, s, s)``."""
        if isinstance(self.vh, int) and isinstance(self.vw, int):
            return t[:, :, self.vh : self.vh + self.s, self.vw : self.vw + self.s]
        r, ys, xs = self._index(t.shape[0], t.device)
        return t[r, :, ys, xs].permute(0, 3, 1, 2)  # (n, s, s, C) -> (n, C, s, s)

    def write(self, t: Tensor, values: Tensor) -> None:
        """Set the window of ``t`` to ``values`` (``(n, C, s, s)``) in place."""
        if isinstance(self.vh, int) and isinstance(self.vw, int):
            t[:, :, self.vh : self.vh + self.s, self.vw : self.vw + self.s] = values
            return
        r, ys, xs = self._index(t.shape[0], t.device)
        t[r, :, ys, xs] = values.permute(0, 2, 3, 1)


class Draws(ABC):
    """The random choices of one Square run, asked for in the reference's order.

    ``index`` is the global position of each row still attacked (used by per-point randomness);
    ``it`` is the iteration (``-1`` for the starting point); ``restart`` is set by :meth:`start_restart`.
    """

    restart: int = 0

    def start_restart(self, restart: int) -> None:
        self.restart = restart

    @abstractmethod
    def stripes(self, index: Tensor, c: int, w: int) -> Tensor:
        """L∞ start: a sign per (row, channel, column). Shape: ``(n, C, 1, W)``."""

    @abstractmethod
    def grid_cell(self, index: Tensor, c: int, cell: int) -> tuple[Tensor, Tensor]:
        """L2 start, one grid cell: whether to transpose the pattern (``(n or 1,)`` bool) and a sign per (row,
        channel) (``(n, C, 1, 1)``)."""

    @abstractmethod
    def linf_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Tensor]:
        """L∞ iteration: the window and a sign per channel (``(n or 1, C, 1, 1)``)."""

    @abstractmethod
    def l2_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Window, Tensor, Tensor]:
        """L2 iteration: the window that receives mass, the one emptied, whether to transpose the pattern
        (``(n or 1,)`` bool) and a sign per (row, channel) (``(n, C, 1, 1)``)."""


class ReferenceDraws(Draws):
    """The reference's randomness: a generator seeded with ``seed`` (the reference re-seeds its global one with
    it in every ``perturb``), shared windows, consumed in the reference's order. Same CPU stream as
    ``torch.manual_seed(seed)``; the draws are made on the CPU and moved to ``device``.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.device = device

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.gen).to(self.device)

    def _sign(self, *shape: int) -> Tensor:
        return torch.sign(2 * self._rand(*shape) - 1)  # 0 with probability 2^-24, as in the reference

    def _position(self, high: int) -> int:
        return int((high * self._rand(1)).long())  # never ``high`` itself (the reference's quirk)

    def _transpose(self) -> Tensor:
        return (self._rand(1) > 0.5).to(self.device)

    def stripes(self, index: Tensor, c: int, w: int) -> Tensor:
        return self._sign(len(index), c, 1, w)

    def grid_cell(self, index: Tensor, c: int, cell: int) -> tuple[Tensor, Tensor]:
        flip = self._transpose()
        return flip, self._sign(len(index), c, 1, 1)

    def linf_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Tensor]:
        vh, vw = self._position(h - s), self._position(w - s)
        return Window(vh, vw, s), self._sign(c, 1, 1)[None]

    def l2_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Window, Tensor, Tensor]:
        vh, vw = self._position(h - s), self._position(w - s)
        vh2, vw2 = self._position(h - s), self._position(w - s)
        flip = self._transpose()
        return Window(vh, vw, s), Window(vh2, vw2, s), flip, self._sign(len(index), c, 1, 1)


# splitmix64 constants as signed int64 (torch has no uint64 arithmetic; int64 products wrap around).
_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_SQUARE_TAG = 0x5371_7561_7265  # "Square": keeps these streams apart from other users of the same seed


def _int64(v: int) -> int:
    """A Python integer wrapped to int64's range (two's complement)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: Tensor) -> Tensor:
    """splitmix64's finaliser: a bijection of 64-bit integers whose outputs look independent."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


class PointDraws(Draws):
    """Our randomness: every number is a hash of (seed, the point's global index, restart, iteration, purpose,
    element), so each point has its own windows and signs whatever its batch, and the cost is a few integer
    operations per number.
    """

    def __init__(self, seed: int) -> None:
        self.key = int(_mix(torch.tensor([_int64(seed ^ _SQUARE_TAG)], dtype=torch.int64)))

    def uniform(self, index: Tensor, it: int, purpose: int, size: int) -> Tensor:
        """``size`` uniform numbers in [0, 1) per row, a function of (seed, index, restart, it, purpose) only.

        Shape:
            - index: ``(n,)`` int64; output: ``(n, size)`` float32
        """
        return self.uniforms(index, it, (purpose,), size)[:, 0]

    def uniforms(self, index: Tensor, it: int, purposes: tuple[int, ...], size: int) -> Tensor:
        """:meth:`uniform` for several purposes of one iteration at once: the same numbers, the hash of (seed,
        index, restart, it) computed once for all of them (an iteration's draws cost a third of the operations).

        Shape:
            - index: ``(n,)`` int64; output: ``(n, len(purposes), size)`` float32
        """
        z = _mix(index.to(torch.int64) * _GAMMA + self.key)
        for part in (self.restart, it + 1):
            z = _mix(z + _int64(part * _GAMMA))
        tags = torch.tensor([_int64(q * _GAMMA) for q in purposes], device=index.device, dtype=torch.int64)
        z = _mix(z[:, None] + tags)  # (n, P)
        elems = torch.arange(size, device=index.device, dtype=torch.int64) * _GAMMA
        bits = _shift_right(_mix(z[:, :, None] + elems), 40)  # the top 24 bits, (n, P, size)
        return bits.to(torch.float32) * 2.0**-24

    @staticmethod
    def _signs(u: Tensor, c: int) -> Tensor:
        return torch.where(u < 0.5, -1.0, 1.0).view(-1, c, 1, 1)

    @staticmethod
    def _positions(u: Tensor, high: int) -> Tensor:
        return (u * (high + 1)).long().clamp_max(high)  # every position 0 ... high

    def stripes(self, index: Tensor, c: int, w: int) -> Tensor:
        u = self.uniform(index, -1, 0, c * w)
        return torch.where(u < 0.5, -1.0, 1.0).view(-1, c, 1, w)

    def grid_cell(self, index: Tensor, c: int, cell: int) -> tuple[Tensor, Tensor]:
        u = self.uniform(index, -1, 1 + cell, c + 1)
        return u[:, 0] < 0.5, torch.where(u[:, 1:] < 0.5, -1.0, 1.0).view(-1, c, 1, 1)

    def linf_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Tensor]:
        u = self.uniforms(index, it, (0, 1, 2), c)  # purposes 0, 1: the window's corner; 2: the signs
        window = Window(self._positions(u[:, 0, 0], h - s), self._positions(u[:, 1, 0], w - s), s)
        return window, self._signs(u[:, 2], c)

    def l2_step(self, index: Tensor, it: int, c: int, h: int, w: int, s: int) -> tuple[Window, Window, Tensor, Tensor]:
        u = self.uniforms(index, it, (0, 1, 2, 3, 4, 5), c)  # two corners, the flip, the signs
        first = Window(self._positions(u[:, 0, 0], h - s), self._positions(u[:, 1, 0], w - s), s)
        second = Window(self._positions(u[:, 2, 0], h - s), self._positions(u[:, 3, 0], w - s), s)
        return first, second, u[:, 4, 0] < 0.5, self._signs(u[:, 5], c)


def _oriented(pattern: Tensor, flip: Tensor, like: Tensor) -> Tensor:
    """The pattern, transposed where ``flip``. Shape: ``(s, s)``, ``(m,)`` → ``(m, 1, s, s)`` (m = n or 1)."""
    p = pattern.to(device=like.device, dtype=like.dtype)
    return torch.where(flip.view(-1, 1, 1, 1), p.T, p).contiguous()


def _l2_norm(t: Tensor) -> Tensor:
    """Shape: ``(n, *)`` → ``(n, 1, 1, 1)``."""
    return (t**2).view(t.shape[0], -1).sum(-1).sqrt().view(-1, 1, 1, 1)


def _l2_normalise(t: Tensor) -> Tensor:
    return t / (_l2_norm(t) + 1e-12)


def linf_start(x: Tensor, eps: Tensor, signs: Tensor) -> Tensor:
    """Vertical stripes: ``x + eps * sign`` with one sign per (channel, column), clipped to [0, 1].

    Shape:
        - x: ``(n, C, H, W)``; eps: ``(n, 1, 1, 1)``; signs: ``(n, C, 1, W)``
    """
    return torch.clamp(x + eps * signs, 0.0, 1.0)


def l2_start(x: Tensor, eps: Tensor, index: Tensor, draws: Draws) -> Tensor:
    """A grid of :func:`eta_pattern` cells with random orientation and a random sign per channel, scaled to
    L2 norm ``eps`` and clipped to [0, 1].

    Shape:
        - x: ``(n, C, H, W)``; eps: ``(n, 1, 1, 1)``
    """
    _, c, h, w = x.shape
    s, cells = grid_cells(h, w)
    pattern = eta_pattern(s)
    delta = torch.zeros_like(x)
    for k, (vh, vw) in enumerate(cells):
        flip, signs = draws.grid_cell(index, c, k)
        delta[:, :, vh : vh + s, vw : vw + s] += _oriented(pattern, flip, x) * signs.to(x.dtype)
    return torch.clamp(x + _l2_normalise(delta) * eps, 0.0, 1.0)


def linf_candidate(x: Tensor, x_best: Tensor, eps: Tensor, window: Window, signs: Tensor) -> Tensor:
    """Move the window of ``x_best`` to the vertex ``x + eps * sign`` (one sign per channel): add ``2 eps sign``
    there, project onto the eps-ball, clip to [0, 1].

    Shape:
        - x, x_best: ``(n, C, H, W)``; eps: ``(n, 1, 1, 1)``; signs: ``(n or 1, C, 1, 1)``
    """
    h, w = x.shape[-2:]
    step = window.mask(h, w, x) * (2.0 * eps * signs.to(x.dtype))
    x_new = torch.min(torch.max(x_best + step, x - eps), x + eps)
    return torch.clamp(x_new, 0.0, 1.0)


def l2_candidate(
    x: Tensor,
    x_best: Tensor,
    eps: Tensor,
    first: Window,
    second: Window,
    pattern: Tensor,
    signs: Tensor,
) -> Tensor:
    """Empty window ``second`` and put a fresh signed pattern plus the old content into window ``first``, scaled
    so that the perturbation keeps (at most) L2 norm eps; then rescale to norm eps and clip to [0, 1].

    The first window's mass becomes ``sqrt(max(eps^2 - ||delta||^2, 0) / C + ||delta on both windows||^2)`` per
    channel: the mass of both windows plus an equal share of any budget left unused.

    Shape:
        - x, x_best: ``(n, C, H, W)``; eps: ``(n, 1, 1, 1)``; pattern: ``(n or 1, 1, s, s)``;
          signs: ``(n, C, 1, 1)``
    """
    _, c, h, w = x.shape
    delta = x_best - x
    old = first.read(delta)  # (n, C, s, s)
    old_norm = (old**2).sum(dim=(-2, -1), keepdim=True).sqrt()  # (n, C, 1, 1)
    image_norm = _l2_norm(delta)  # (n, 1, 1, 1)
    both = torch.max(first.mask(h, w, x), second.mask(h, w, x))
    windows_norm = ((delta * both) ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()  # (n, C, 1, 1)
    new = (pattern * signs.to(x.dtype)).contiguous()  # a transposed layout would change the sums' rounding
    new = new + old / (1e-12 + old_norm)
    mass = (torch.clamp(eps**2 - image_norm**2, min=0.0) / c + windows_norm**2).sqrt()
    new = new / (1e-12 + (new**2).sum(dim=(-2, -1), keepdim=True).sqrt()) * mass
    delta = delta.clone()
    second.write(delta, torch.zeros_like(new))
    first.write(delta, new)
    return torch.clamp(x + _l2_normalise(delta) * eps, 0.0, 1.0)


def margin_and_loss(logits: Tensor, labels: Tensor, targets: Tensor | None, loss: str) -> tuple[Tensor, Tensor]:
    """The margin (``<= 0``: the goal is met) and the loss Square minimises.

    Untargeted: margin ``z_y - max_{k != y} z_k``; loss = the margin (``"margin"``) or minus the cross-entropy of
    ``y`` (``"ce"``). Targeted: margin ``max_{k != t} z_k - z_t``; loss = the margin or the cross-entropy of ``t``.

    Shape:
        - logits: ``(n, K)``; labels, targets: ``(n,)``; outputs: ``(n,)``
    """
    cls = labels if targets is None else targets
    own = logits.gather(1, cls[:, None]).squeeze(1)
    margin = own - other_max(logits, cls) if targets is None else other_max(logits, cls) - own
    if loss == "margin":
        return margin, margin
    xent = F.cross_entropy(logits, cls, reduction="none")
    return margin, (-1.0 * xent if targets is None else xent)


def square_attack(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    eps: Tensor,
    *,
    norm: str,
    config: SquareConfig,
    index: Tensor,
    draws: Draws,
    on_query: Callable[[Tensor], None],
    init: Tensor | None = None,
) -> Tensor:
    """Run the Square Attack on one batch (no gradient is ever taken).

    A candidate replaces a point's best when its loss is strictly lower or it meets the goal; a point that meets
    the goal stops querying. By default the goal is the evaluator's rule (prediction != label, or == target, with
    finite logits), so a point with tied logits is not dropped early, and non-finite logits count as the worst
    loss (any finite candidate replaces them). With ``config.reference_rng`` the goal is the reference's
    ``margin <= 0`` and losses compare as the reference compares them.

    Args:
        forward: The model (logits out); called under ``torch.no_grad``.
        x: Clean inputs in [0, 1].
        labels: True labels.
        targets: Target classes, or ``None`` for untargeted.
        eps: Per-sample budget.
        norm: ``"linf"`` or ``"l2"``.
        config: Settings.
        index: Global position of each row (per-point randomness, query counts).
        draws: The source of randomness (:class:`PointDraws` or :class:`ReferenceDraws`).
        on_query: Called with the global indices of the rows of every forward pass.
        init: Starting points of the first restart instead of the stripes / grid (projected into the ball and
            [0, 1] first): the warm start of a minimal search.

    Returns:
        One candidate per row: the first point that met the goal, else the lowest-loss point found.

    Shape:
        - x: ``(N, C, H, W)``; labels, targets, eps, index: ``(N,)``; output: ``(N, C, H, W)``
    """
    with torch.no_grad():
        out = x.clone()
        out_loss = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
        running = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for restart in range(config.restarts):
            draws.start_restart(restart)
            rows = running.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            s = ActiveRows(
                x=x[rows],
                labels=labels[rows],
                targets=None if targets is None else targets[rows],
                eps=eps[rows].to(x.dtype).view(-1, 1, 1, 1),
                index=index[rows],
                init=None if init is None or restart > 0 else init[rows],
            )
            fooled, best, best_loss = _single_run(forward, s, norm, config, draws, on_query)
            better = fooled | (best_loss < out_loss[rows])
            out[rows[better]] = best[better]
            out_loss[rows[better]] = torch.where(fooled, -math.inf, best_loss)[better]
            running[rows[fooled]] = False
        return out


def _judge_queries(
    logits: Tensor, s: ActiveRows, config: SquareConfig, reference: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Margin, loss (non-finite → +inf) and goal met for the logits of the active rows."""
    margin, loss = margin_and_loss(logits, s["labels"], s.get("targets"), config.loss)
    finite = torch.isfinite(logits).all(1)
    if reference:
        goal = margin <= 0.0
    else:
        pred = logits.argmax(1)
        goal = (pred != s["labels"] if s.get("targets") is None else pred == s["targets"]) & finite
        loss = torch.where(finite, loss, math.inf)
    return margin, loss, goal


def _single_run(
    forward: Callable[[Tensor], Tensor],
    s: ActiveRows,
    norm: str,
    config: SquareConfig,
    draws: Draws,
    on_query: Callable[[Tensor], None],
) -> tuple[Tensor, Tensor, Tensor]:
    """One restart on the rows of ``s``: (goal met, best point, best loss), each over those rows."""
    x, eps, init = s["x"], s["eps"], s.get("init")
    _, c, h, w = x.shape
    if init is not None:
        delta = init.to(x.dtype) - x
        if norm == "linf":
            delta = torch.max(torch.min(delta, eps), -eps)
        else:
            delta = delta * torch.clamp(eps / (_l2_norm(delta) + 1e-12), max=1.0)
        x_best = torch.clamp(x + delta, 0.0, 1.0)
    elif norm == "linf":
        x_best = linf_start(x, eps, draws.stripes(s["index"], c, w).to(x.dtype))
    else:
        x_best = l2_start(x, eps, s["index"], draws)
    logits = forward(x_best)
    on_query(s["index"])
    margin, loss, goal = _judge_queries(logits, s, config, config.reference_rng)

    fooled = goal.clone()
    best = x_best.clone()
    best_loss = loss.clone()
    s["x_best"], s["loss"] = x_best, loss
    if config.reference_rng and bool((margin < 0.0).all()):
        return fooled, best, best_loss  # the reference returns at once when every point is fooled at the start
    s.keep(~goal)
    patterns: dict[int, Tensor] = {}
    for it in range(config.queries):
        if len(s) == 0:
            break
        p = p_selection(it, config.p_init, config.queries, config.rescale_schedule)
        side = window_side(p, c, h, w, norm)
        if norm == "linf":
            window, signs = draws.linf_step(s["index"], it, c, h, w, side)
            x_new = linf_candidate(s["x"], s["x_best"], s["eps"], window, signs)
        else:
            first, second, flip, signs = draws.l2_step(s["index"], it, c, h, w, side)
            if side not in patterns:
                patterns[side] = eta_pattern(side)
            pattern = _oriented(patterns[side], flip, x)
            x_new = l2_candidate(s["x"], s["x_best"], s["eps"], first, second, pattern, signs)
        logits = forward(x_new)
        on_query(s["index"])
        margin, loss, goal = _judge_queries(logits, s, config, config.reference_rng)
        improved = loss < s["loss"]
        s["loss"] = torch.where(improved, loss, s["loss"])
        s["x_best"] = torch.where((improved | goal).view(-1, 1, 1, 1), x_new, s["x_best"])
        if bool(goal.any()):
            done = s.rows[goal]
            best[done], best_loss[done], fooled[done] = s["x_best"][goal], s["loss"][goal], True
            s.keep(~goal)
    best[s.rows], best_loss[s.rows] = s["x_best"], s["loss"]
    return fooled, best, best_loss


#: Where :class:`SquareMethod` keeps its per-sample query counts in :attr:`RunContext.log`.
_LOG_KEY = "square_queries"


class SquareMethod(AttackMethod):
    """The Square Attack as a registered attack (``"square"``), L∞ and L2, AutoAttack's settings by default.

    Gradient-free: it only calls the model forward, and counts each call per sample
    (:meth:`PassCounter.add_forward`), so a result's ``forward_passes`` holds each point's queries plus the
    façade's clean and judging passes; its ``queries`` column holds the queries alone. The generic ``steps`` is
    the number of queries; there is no step size.
    """

    name = "square"
    takes_surrogate = False
    norms = ("linf", "l2")
    fixed_budget = True
    defaults = SquareConfig()

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> SquareConfig:
        if step_size is not None:
            raise ConfigError("square has no step size; its window size follows p_init (set p_init=... instead)")
        cfg: SquareConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, queries=steps)
        if cfg.queries < 1:
            raise ConfigError(f"square needs queries >= 1, got {cfg.queries}")
        if cfg.restarts < 1:
            raise ConfigError(f"square needs restarts >= 1, got {cfg.restarts}")
        if not 0.0 < cfg.p_init <= 1.0:
            raise ConfigError(f"square needs 0 < p_init <= 1 (a fraction of the image), got {cfg.p_init}")
        if cfg.loss not in ("margin", "ce"):
            raise ConfigError(f"square's loss must be 'margin' or 'ce', got {cfg.loss!r}")
        return cfg

    def cost(self) -> Cost:
        c = self.config
        return Cost(gradient=0, forward=c.restarts * (c.queries + 1))

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        if ctx.norm.name not in self.norms:
            raise ConfigError(f"square supports norms {', '.join(self.norms)}, not {ctx.norm.name!r}")
        cfg: SquareConfig = self.config
        seed = int(ctx.generator.initial_seed())
        x = batch.x
        draws: Draws = ReferenceDraws(seed, x.device) if cfg.reference_rng else PointDraws(seed)
        queries = ctx.log.setdefault(_LOG_KEY, torch.zeros_like(ctx.counter.forward))

        def on_query(index: Tensor) -> None:
            ctx.counter.add_forward(index)
            queries[index.cpu()] += 1

        def forward(t: Tensor) -> Tensor:
            logits: Tensor = ctx.model(t)
            return logits

        return square_attack(
            forward,
            x,
            batch.labels,
            batch.targets,
            batch.eps,
            norm=ctx.norm.name,
            config=cfg,
            index=batch.index,
            draws=draws,
            on_query=on_query,
            init=batch.init,
        )

    def summarise(
        self, ctx: RunContext, x: Tensor, x_adv: Tensor, labels: Tensor, correct: Tensor
    ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        queries = ctx.log.get(_LOG_KEY, torch.zeros(x.shape[0], dtype=torch.int64))
        return {}, {"queries": [int(q) for q in queries.tolist()]}


ATTACKS.register("square", SquareMethod())
