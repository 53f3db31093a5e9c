"""Names vulture (https://github.com/jendrikseipp/vulture) reports as unused but that are used.

CI runs ``vulture spinenet_lite .vulture_whitelist.py --min-confidence 80``; with this file
``--min-confidence 60`` passes as well. Each name here says why it stays: attributes set for a
library (pydicom, torch, matplotlib / ipywidgets), fields of a data type, hooks that torch calls, or
public API that only the tests and the book's chapters use (vulture reads only the package). Dead
code belongs deleted, not listed here.
"""

# ruff: noqa
_ = object()

# pydicom data elements set as attributes by io.dicom.write (the rest go through a dict)
_.MediaStorageSOPClassUID
_.MediaStorageSOPInstanceUID
_.ImplementationClassUID
_.SOPInstanceUID
_.InstanceNumber
_.ImagePositionPatient
_.SliceLocation
_.is_implicit_VR  # pydicom 2.x only
_.is_little_endian  # pydicom 2.x only

# attributes set on library objects
_.benchmark  # torch.backends.cudnn.benchmark (seed.seed_everything)
_.patience  # torch ReduceLROnPlateau.patience, restored on resume (engine.training)
_.opacity  # the explorer widget exposes its controls as attributes (viz.hotspots)
_.figure  # the explorer widget's matplotlib figure (viz.hotspots)

# methods that torch calls
_.forward  # nn.Module.forward (nn.model, localise.net)
_.extra_repr  # nn.Module.extra_repr (nn.model)

# fields of data types (dataclasses / NamedTuples): part of the record, read by callers and tests
predictions  # engine.evaluation.EvalResult
probability  # localise.inference.Localisation
estimate  # metrics.classification.CI
above  # phantom.anatomy disc record
region  # tasks.Task
klass  # viz.data.Example
study_index  # viz.data.Example

# public API used by the tests and the book's chapters (not by the package itself)
N_TTA_VIEWS  # engine.evaluation (tests/test_evaluate.py)
CACHE_ENV  # datasets.spider_release, an alias of paths.CACHE_DIR_ENV (tests/test_spider_release.py)
_.load_yaml  # config.TrainConfig (tests/test_config.py, tests/test_train.py)
_.geometry_of  # datasets.cache.DiscDataset (book/06_hotspots.ipynb, tests/test_cache.py)
_.has  # experiments.paper chapter results (book/05_evaluation.ipynb)
_.volume_to_mm  # extract.discs.DiscGeometry (tests/test_extract.py)
_.region_mask  # extract.discs.DiscGeometry (book/02_extraction.ipynb, tests/test_extract.py)
_.corners_mm  # phantom.PhantomStudy (ARCHITECTURE.md's public surface)
