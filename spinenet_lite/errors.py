"""The project's exceptions: one base class, one subclass per kind of bad input.

Every message says what is wrong and what to do about it. Code that catches
``SpineNetError`` catches every error the project raises on purpose; anything else
escaping is a bug.
"""

from __future__ import annotations


class SpineNetError(Exception):
    """Base class of every error spinenet_lite raises on purpose."""


class InputError(SpineNetError, ValueError):
    """The input (a file, folder, array or argument) cannot be used."""


class NoDicomError(InputError):
    """A path holds no readable DICOM file."""


class CorruptFileError(InputError):
    """A file is truncated, not DICOM, or its pixel data cannot be decoded."""


class MultipleSeriesError(InputError):
    """A folder holds more than one series; the user must pick one."""


class NotMRError(InputError):
    """The series is not magnetic resonance (Modality is not ``MR``)."""


class NotSagittalError(InputError):
    """The slices are not sagittal (the slice normal is not left-right)."""


class GeometryError(InputError):
    """Spacing or position tags are missing or inconsistent."""


class PixelDataError(InputError):
    """Pixel values are unusable: non-finite, wrong shape, empty or constant."""


class LandmarkError(InputError):
    """Vertebra corners or disc landmarks are missing, out of order or degenerate."""


class TooFewDiscsError(LandmarkError):
    """Fewer discs are visible than the operation needs."""


class WeightsError(SpineNetError):
    """A weights file is missing, corrupt, or does not match its recorded hash."""


class ConfigError(SpineNetError, ValueError):
    """A configuration value or tier name is invalid."""
