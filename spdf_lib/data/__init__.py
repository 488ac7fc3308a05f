"""Data: the registry of pinned files (`registry`), pre-training corpora (`corpora`) and downstream tasks."""

from spdf_lib.data.registry import REGISTRY, DataError, DataFile, Dataset, dataset, fetch, fetch_file

__all__ = ["REGISTRY", "DataError", "DataFile", "Dataset", "dataset", "fetch", "fetch_file"]
