"""The per-sample state of an iterative attack loop: the rows still running and their tensors, compacted together.

Every iterative loop (the gradient loop with its step rules, C&W, EAD, Square, FAB) drops a sample from the batch
as soon as it is done — fooled, stalled or out of budget — so that the remaining model calls are spent on samples
that still need them. Keeping that compaction in one object means a loop never forgets to compact one of its
tensors (a bug that silently pairs one sample's momentum with another sample's iterate).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


class ActiveRows:
    """The rows of a batch still running, with every per-row tensor.

    ``rows`` holds each active row's position in the original batch; each named tensor has one entry per active
    row along its first dimension (``None`` is allowed for an optional tensor and stays ``None``).

    Example:
        >>> s = ActiveRows(x=torch.zeros(4, 3), step=torch.ones(4))
        >>> s.keep(torch.tensor([True, False, True, False]))
        >>> s.rows.tolist(), s["x"].shape
        ([0, 2], torch.Size([2, 3]))

    Shape:
        - rows: ``(n,)`` int64; each tensor: ``(n, *)``
    """

    def __init__(self, rows: Tensor | None = None, **tensors: Tensor | None) -> None:
        sizes = {t.shape[0] for t in tensors.values() if t is not None}
        if rows is not None:
            sizes.add(rows.shape[0])
        if len(sizes) > 1:
            raise ValueError(f"every per-row tensor needs the same first dimension, got {sorted(sizes)}")
        n = sizes.pop() if sizes else 0
        device = next((t.device for t in tensors.values() if t is not None), torch.device("cpu"))
        self.rows: Tensor = rows if rows is not None else torch.arange(n, device=device)
        self._t: dict[str, Tensor | None] = dict(tensors)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __contains__(self, name: str) -> bool:
        return name in self._t

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __getitem__(self, name: str) -> Tensor:
        value = self._t[name]
        if value is None:
            raise KeyError(f"{name!r} is not set")
        return value

    def get(self, name: str) -> Tensor | None:
        """The tensor ``name``, or ``None`` when it is unset or ``None``."""
        return self._t.get(name)

    def __setitem__(self, name: str, value: Tensor | None) -> None:
        if value is not None and value.shape[0] != len(self):
            raise ValueError(f"{name!r} has {value.shape[0]} rows, the state has {len(self)}")
        self._t[name] = value

    def keep(self, mask: Tensor) -> None:
        """Keep only the rows where ``mask`` is True, in every tensor at once.

        Shape:
            - mask: ``(n,)`` bool
        """
        self.rows = self.rows[mask]
        self._t = {k: (None if v is None else v[mask]) for k, v in self._t.items()}

    def scatter(self, out: Tensor, name: str, mask: Tensor | None = None) -> None:
        """Write tensor ``name`` of the active rows (or of those where ``mask`` is True) into ``out`` at their
        batch positions.

        Shape:
            - out: ``(N, *)``, the whole batch
        """
        value = self[name]
        if mask is None:
            out[self.rows] = value.to(out.dtype)
        else:
            out[self.rows[mask]] = value[mask].to(out.dtype)
