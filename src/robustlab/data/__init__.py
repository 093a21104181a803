"""Datasets: readers, checksums, data-directory resolution and deterministic evaluation subsets.

Example:
    >>> from robustlab.data import load_dataset
    >>> ds = load_dataset("cifar10", "test").subset(500, seed=0)  # doctest: +SKIP
    >>> for x, y, idx in ds.batches(128):  # x float32 (B, 3, 32, 32) in [0, 1]  # doctest: +SKIP
    ...     ...

Named datasets live in ``<data dir>/<name>/`` where the data directory is ``--data DIR``, else
``$ROBUSTLAB_DATA``, else ``~/.cache/robustlab/data``. ``npz:PATH`` and ``folder:PATH`` read files directly.
"""

from robustlab.data._dataset import Dataset, to_float_images
from robustlab.data._files import DATA_ENV_VAR, DEFAULT_DATA_DIR, resolve_data_dir
from robustlab.data._load import DataCheck, check_data, list_datasets, load_dataset
from robustlab.data._specs import DATASETS, SPLITS, DatasetSpec, FileSpec, SplitSource, dataset_spec

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "DEFAULT_DATA_DIR",
    "SPLITS",
    "DataCheck",
    "Dataset",
    "DatasetSpec",
    "FileSpec",
    "SplitSource",
    "check_data",
    "dataset_spec",
    "list_datasets",
    "load_dataset",
    "resolve_data_dir",
    "to_float_images",
]
