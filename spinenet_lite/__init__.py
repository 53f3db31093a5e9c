"""spinenet_lite: SpineNet (Jamaludin, Kadir, Zisserman, MICCAI 2016) reproduced and taught.

The pipeline, one module a stage::

    DICOM / phantom -> Scan (scan, dicom_io) -> corners (phantom, localise)
      -> disc volumes 9x112x224 (extract) -> SpineNet (model) -> grades (evaluate)
                                                    └-> evidence hotspots (hotspots)
"""

from .errors import SpineNetError
from .io.scan import Scan
from .seed import seed_everything
from .tasks import LEVELS, MISSING, TASK_NAMES, TASKS, VERTEBRAE

__version__ = "0.1.0"

__all__ = [
    "LEVELS",
    "MISSING",
    "TASKS",
    "TASK_NAMES",
    "VERTEBRAE",
    "Scan",
    "SpineNetError",
    "seed_everything",
    "__version__",
]
