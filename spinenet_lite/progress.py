"""Progress bars: ``tqdm.auto`` that a whole run can silence.

Every progress bar of the package is this module's :class:`tqdm`. It is ``tqdm.auto.tqdm``
(a widget in Jupyter, text in a terminal) except that the environment variable
``TQDM_DISABLE=1`` switches it off even where the caller asked for a bar
(``disable=False``): tqdm's own ``TQDM_DISABLE`` only changes the default. ``book/build.py``
sets it, so that the executed chapters, and the site made from them, carry no bar.
"""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm as _auto_tqdm

__all__ = ["quiet", "tqdm"]


def quiet() -> bool:
    """True when ``$TQDM_DISABLE`` asks for no progress bars (``1``, ``true`` or ``yes``)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}


class tqdm(_auto_tqdm):  # noqa: N801 - a drop-in for tqdm.auto.tqdm
    """``tqdm.auto.tqdm``, disabled whatever the caller said when :func:`quiet`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if quiet():
            kwargs["disable"] = True
        super().__init__(*args, **kwargs)
