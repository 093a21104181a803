"""The in-memory :class:`Dataset`: images, labels, class names and the rows they came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from robustlab.errors import ConfigError, DataError

__all__ = ["Dataset", "to_float_images"]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One split of a dataset (or a subset of it), held in memory.

    Pixels are stored compactly as ``uint8`` (0..255) whenever the source is 8-bit, which every official
    dataset and image folder is. A ``npz:`` file with float pixels in [0, 1] is converted to ``uint8`` only
    when every value is exactly ``k / 255`` for an integer ``k`` (so no information is lost); otherwise
    ``x`` stays ``float32`` in [0, 1]. Use :meth:`images` or :meth:`batches` to get model inputs: they are
    always float in [0, 1], whatever the storage dtype.

    The dataclass is frozen but compares by identity (``eq=False``): element-wise tensor equality has no
    single truth value.

    Attributes:
        name: ``"cifar10"``, ``"mnist"``, ``"fashion-mnist"``, ``"npz:/abs/path"`` or ``"folder:/abs/path"``.
        split: ``"test"`` or ``"train"``.
        x: Images, ``uint8`` in 0..255 or ``float32`` in [0, 1].
        y: Integer class labels in ``0 .. len(classes) - 1``.
        classes: Class names; ``classes[k]`` is the name of label ``k``.
        indices: Row of each sample in the full split (``arange(N)`` for a full split); subsets and
            :meth:`take` keep it, so results can always be traced back to the source rows.

    Shape:
        - x: ``(N, C, H, W)``
        - y: ``(N,)``, int64
        - indices: ``(N,)``, int64
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    indices: torch.Tensor

    def __post_init__(self) -> None:
        x, y, idx = self.x, self.y, self.indices
        if x.dim() != 4:
            raise DataError(f"dataset {self.name!r}: x must have shape (N, C, H, W), got {tuple(x.shape)}")
        if x.dtype not in (torch.uint8, torch.float32):
            raise DataError(f"dataset {self.name!r}: x must be uint8 or float32, got {x.dtype}")
        n = x.shape[0]
        for what, t in (("y", y), ("indices", idx)):
            if t.dtype != torch.int64 or t.shape != (n,):
                raise DataError(
                    f"dataset {self.name!r}: {what} must be int64 of shape ({n},), got {t.dtype} {tuple(t.shape)}"
                )
        if n and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
            raise DataError(
                f"dataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1} "
                f"({len(self.classes)} classes), got {int(y.min())}..{int(y.max())}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.x.shape[1:])}, dtype={self.x.dtype}, classes={len(self.classes)})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def images(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All images as floats in [0, 1] (a new tensor; changing it does not change the dataset).

        Args:
            dtype: A floating dtype.

        Returns:
            The images; ``uint8`` storage is divided by 255.

        Shape:
            - Output: ``(N, C, H, W)``

        Raises:
            ConfigError: if ``dtype`` is not a floating dtype.
        """
        return to_float_images(self.x, dtype)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Iterate over consecutive batches in dataset order (the last one may be smaller).

        Args:
            batch_size: Samples per batch, at least 1.

        Yields:
            ``(x, y, indices)``: float32 images in [0, 1], labels, and rows in the full split.

        Shape:
            - x: ``(B, C, H, W)``, float32
            - y: ``(B,)``, int64
            - indices: ``(B,)``, int64

        Raises:
            ConfigError: if ``batch_size`` < 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield to_float_images(self.x[start:stop]), self.y[start:stop], self.indices[start:stop]

    def subset(self, n: int | None, seed: int = 0) -> Dataset:
        """A deterministic random subset of ``n`` samples.

        The rows are the first ``n`` of a permutation drawn from ``torch.Generator().manual_seed(seed)``,
        then sorted into dataset order. So the same ``(n, seed)`` always gives the same rows, and for one
        seed a smaller subset is contained in a larger one.

        Args:
            n: Number of samples. ``None`` or ``n >= len(self)`` returns ``self`` unchanged.
            seed: Seed of the generator.

        Returns:
            A dataset whose ``indices`` record the rows in the full split.

        Raises:
            ConfigError: if ``n`` <= 0 or is not an integer.
        """
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError(f"subset size must be an integer or None, got {n!r}")
        if n <= 0:
            raise ConfigError(f"subset size must be positive (or None for all samples), got {n}")
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(int(seed))
        rows = torch.randperm(len(self), generator=generator)[:n]
        return self.take(torch.sort(rows).values)

    def take(self, idx: torch.Tensor) -> Dataset:
        """The samples at positions ``idx`` of this dataset (positions, not rows of the full split).

        Args:
            idx: Integer positions in ``0 .. len(self) - 1`` (order kept, repeats allowed) or a boolean mask.

        Returns:
            A new dataset; its ``indices`` are ``self.indices[idx]``.

        Shape:
            - idx: ``(M,)`` integer, or ``(N,)`` bool

        Raises:
            ConfigError: if ``idx`` is not 1-D, not integer/bool, or out of range.
        """
        idx = torch.as_tensor(idx)
        if idx.dim() != 1:
            raise ConfigError(f"take() needs a 1-D index tensor, got shape {tuple(idx.shape)}")
        if idx.dtype == torch.bool:
            if idx.shape[0] != len(self):
                raise ConfigError(f"take() mask has length {idx.shape[0]}, dataset has {len(self)}")
            idx = torch.nonzero(idx).flatten()
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise ConfigError(f"take() needs integer positions or a bool mask, got {idx.dtype}")
        idx = idx.to(torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise ConfigError(
                f"take() positions must lie in 0..{len(self) - 1}, got {int(idx.min())}..{int(idx.max())}"
            )
        return Dataset(
            name=self.name,
            split=self.split,
            x=self.x[idx],
            y=self.y[idx],
            classes=self.classes,
            indices=self.indices[idx],
        )


def to_float_images(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images as model inputs: ``uint8`` pixels (0..255) → ``x / 255``; float images → a copy in ``dtype``.

    The one uint8 → float conversion of robustlab (datasets, accuracy, corruption metrics and the attack jobs call
    it, often on one batch at a time so that a whole split is never held as float). The result never shares
    memory with ``x``, so callers may modify it in place.

    Args:
        x: Images, ``uint8`` or float in [0, 1].
        dtype: A floating dtype.

    Returns:
        A new tensor in ``dtype``, values in [0, 1] for valid inputs (other values are not checked here; the
        model adapter refuses them).

    Raises:
        ConfigError: if ``dtype`` is not a floating dtype.

    Shape:
        x: ``(N, C, H, W)`` → the same shape.
    """
    if not dtype.is_floating_point:
        raise ConfigError(f"images need a floating dtype, got {dtype}")
    if x.dtype == torch.uint8:
        return x.to(dtype).div_(255)
    return x.to(dtype, copy=True)
