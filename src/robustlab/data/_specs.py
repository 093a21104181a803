"""Dataset metadata as data: files, checksums, official URLs, class names, split → sources.

A dataset is a :class:`DatasetSpec` in the :data:`DATASETS` registry. Loading code never branches on a
dataset's name: it walks the spec's :class:`SplitSource` entries in order of preference and hands the first
one whose files are all present to the reader registered under ``SplitSource.reader``.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustlab._registry import Registry

__all__ = ["DATASETS", "SPLITS", "DatasetSpec", "FileSpec", "SplitSource", "dataset_spec"]

SPLITS: tuple[str, ...] = ("test", "train")
"""The split names every dataset understands."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset, relative to the dataset's directory.

    Attributes:
        name: Relative path inside the dataset directory (``/``-separated).
        md5: md5 of the file's bytes, if the file is verified as a whole.
        array_sha256: For ``.npz`` files: ``(key, sha256)`` pairs, the sha256 of each decoded array's
            C-order bytes (robust to re-compression of the archive).
        url: Official download URL, if the file can be downloaded.
        size: Size in bytes (informational).
    """

    name: str
    md5: str | None = None
    array_sha256: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class SplitSource:
    """One way to obtain a split: a set of files and the reader that parses them.

    Attributes:
        split: ``"test"`` or ``"train"``.
        reader: Name of the reader in the readers registry (``"idx"``, ``"cifar-batches"``, ...).
        files: Files that must all be present.
        rows: Number of samples this source yields.
        description: Human-readable description, used in messages.
        members: Members to read inside an archive (for archive readers).
        complete: ``False`` when the source holds only rows ``0 .. rows - 1`` of the official split.
    """

    split: str
    reader: str
    files: tuple[FileSpec, ...]
    rows: int
    description: str
    members: tuple[str, ...] = ()
    complete: bool = True

    @property
    def downloadable(self) -> bool:
        """Whether every file of this source has an official URL."""
        return all(f.url for f in self.files)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything robustlab knows about a named dataset.

    Attributes:
        name: Registry name (``"cifar10"``).
        title: Display name (``"CIFAR-10"``).
        directory: Sub-directory of the data directory that holds the files.
        classes: Class names in label order.
        shape: Image shape ``(C, H, W)``.
        sources: Ways to obtain each split, in order of preference.
        homepage: Official page.
        citation: What to cite.
        license: License or terms, in one line.
    """

    name: str
    title: str
    directory: str
    classes: tuple[str, ...]
    shape: tuple[int, int, int]
    sources: tuple[SplitSource, ...]
    homepage: str
    citation: str
    license: str

    def sources_for(self, split: str) -> tuple[SplitSource, ...]:
        """The sources of ``split`` in order of preference."""
        return tuple(s for s in self.sources if s.split == split)

    def files(self) -> tuple[FileSpec, ...]:
        """Every distinct file named by any source (first occurrence order)."""
        seen: dict[str, FileSpec] = {}
        for source in self.sources:
            for f in source.files:
                seen.setdefault(f.name, f)
        return tuple(seen.values())


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""The named datasets (``load_dataset("cifar10")``)."""


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a named dataset.

    Raises:
        UnknownNameError: with close matches, if ``name`` is not registered.
    """
    return DATASETS.get(name)


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name, spec)


# ---- MNIST and Fashion-MNIST: the four official gzip IDX files -------------------------------------------


def _idx_sources(base_url: str, files: dict[str, tuple[str, int]]) -> tuple[SplitSource, ...]:
    """Sources of an MNIST-like dataset; ``files`` maps file name → (md5, bytes)."""

    def fs(name: str) -> FileSpec:
        md5, size = files[name]
        return FileSpec(name, md5=md5, url=base_url + name, size=size)

    return tuple(
        SplitSource(
            split=split,
            reader="idx",
            files=(fs(f"{prefix}-images-idx3-ubyte.gz"), fs(f"{prefix}-labels-idx1-ubyte.gz")),
            rows=rows,
            description="official IDX files",
        )
        for split, prefix, rows in (("test", "t10k", 10_000), ("train", "train", 60_000))
    )


_register(
    DatasetSpec(
        name="mnist",
        title="MNIST",
        directory="mnist",
        classes=tuple(str(k) for k in range(10)),
        shape=(1, 28, 28),
        sources=_idx_sources(
            # The mirror torchvision uses (yann.lecun.com no longer serves the files reliably).
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            {
                "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
                "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
                "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
                "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
            },
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document "
        "recognition. Proc. IEEE, 1998.",
        license="CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
    )
)

_register(
    DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        directory="fashion-mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        shape=(1, 28, 28),
        sources=_idx_sources(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            {
                "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
                "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29_515),
                "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4_422_102),
                "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5_148),
            },
        ),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking "
        "Machine Learning Algorithms. arXiv:1708.07747, 2017.",
        license="MIT (Zalando SE)",
    )
)

# ---- CIFAR-10: official python batches (directory or archive), or the offline .npz arrays -----------------

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_TAR = FileSpec(
    "cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a", url=_CIFAR_URL, size=170_498_071
)
_CIFAR_BATCH_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
)
_CIFAR_TEST_BATCHES = (("test_batch", "40351d587109b95175f43aff81a1287e"),)


def _cifar_sources(
    split: str, batches: tuple[tuple[str, str], ...], rows: int, npz: FileSpec, npz_rows: int
) -> tuple[SplitSource, ...]:
    return (
        SplitSource(
            split=split,
            reader="cifar-batches",
            files=tuple(FileSpec(f"{_CIFAR_BATCH_DIR}/{b}", md5=md5) for b, md5 in batches),
            rows=rows,
            description="official python batches, extracted from cifar-10-python.tar.gz",
        ),
        SplitSource(
            split=split,
            reader="cifar-tar",
            files=(_CIFAR_TAR,),
            rows=rows,
            description=f"official archive ({_CIFAR_URL})",
            members=tuple(f"{_CIFAR_BATCH_DIR}/{b}" for b, _ in batches),
        ),
        SplitSource(
            split=split,
            reader="cifar-npz",
            files=(npz,),
            rows=npz_rows,
            complete=npz_rows == rows,
            description="offline uint8 arrays"
            + ("" if npz_rows == rows else f" (only rows 0–{npz_rows - 1} of the {rows:,} training images)"),
        ),
    )


_register(
    DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        directory="cifar10",
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        shape=(3, 32, 32),
        sources=_cifar_sources(
            "test",
            _CIFAR_TEST_BATCHES,
            10_000,
            FileSpec(
                "cifar10-test.npz",
                array_sha256=(
                    ("x", "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04"),
                    ("y", "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5"),
                ),
                size=28_249_938,
            ),
            10_000,
        )
        + _cifar_sources(
            "train",
            _CIFAR_TRAIN_BATCHES,
            50_000,
            FileSpec(
                "cifar10-train-00000-09999.npz",
                array_sha256=(
                    ("x", "fc115a3de050d667b88cbd5b0b9612ebf996c54230fe7758f3a14bb5af9a1c27"),
                    ("y", "d829dbdf32167c9d7b3687cee66d92d80d46c441308b5aca0d11e8b69e27dac9"),
                ),
                size=28_256_028,
            ),
            10_000,
        ),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation="A. Krizhevsky. Learning Multiple Layers of Features from Tiny Images. Technical report, "
        "University of Toronto, 2009.",
        license="no license given; cite Krizhevsky 2009",
    )
)
