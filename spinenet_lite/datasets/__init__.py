"""Data sets: the synthetic cohort, its disc cache and patient splits; the real SPIDER scans."""

from __future__ import annotations

from .cache import (  # noqa: I001
    DiscDataset,
    concat_datasets,
    extract_cohort,
    geometries_to_arrays,
    geometry_from_arrays,
    load_cache,
    patient_folds,
    patient_split,
    to_uint8,
    write_cache,
)
from .spider import (  # noqa: I001
    default_spider_dir,
    labels_from_gradings,
    midsag_patients,
    narrowing_binary,
    read_gradings,
    read_midsag,
    read_overview,
    spider_available,
)
from .spider_derive import (  # noqa: I001
    DerivedSubset,
    check_release,
    derive_subset,
    series_to_uint8,
    space_slices,
)
from .spider_release import (  # noqa: I001
    cache_dir,
    fetch_file,
    fetch_release,
    mask_groups,
    read_mask,
    read_mha,
    read_series,
    release_series,
)
from .synthetic import (  # noqa: I001
    data_root,
    dataset_name,
    synthetic_dataset,
)

__all__ = [
    "geometries_to_arrays",
    "geometry_from_arrays",
    "DiscDataset",
    "to_uint8",
    "write_cache",
    "load_cache",
    "concat_datasets",
    "patient_split",
    "patient_folds",
    "extract_cohort",
    "data_root",
    "dataset_name",
    "synthetic_dataset",
    "default_spider_dir",
    "spider_available",
    "read_gradings",
    "labels_from_gradings",
    "narrowing_binary",
    "read_overview",
    "midsag_patients",
    "read_midsag",
    "cache_dir",
    "fetch_file",
    "fetch_release",
    "release_series",
    "read_mha",
    "read_mask",
    "mask_groups",
    "read_series",
    "DerivedSubset",
    "check_release",
    "derive_subset",
    "space_slices",
    "series_to_uint8",
]
