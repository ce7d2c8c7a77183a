"""Exceptions raised by bloodcell.

Every error the library raises on bad input is one of these. Each subclasses the built-in
exception a Python user would expect (``ValueError``, ``TypeError``, ``FileNotFoundError``), so
``except ValueError`` keeps working, and :class:`BloodcellError` catches them all.

Example:
    >>> import bloodcell as bc
    >>> try:
    ...     bc.classes.normalize_class_name("macrophage")
    ... except ValueError as err:  # UnknownClassError is a ValueError
    ...     print(type(err).__name__)
    UnknownClassError
"""

from __future__ import annotations


class BloodcellError(Exception):
    """Base class of every exception bloodcell raises on purpose."""


class InvalidDataError(BloodcellError, ValueError):
    """Arrays or files whose values or shapes cannot be used (wrong ndim, NaN, labels out of range...)."""


class InvalidDtypeError(BloodcellError, TypeError):
    """Arrays of a type bloodcell will not convert silently (float images, object arrays...)."""


class EmptyDatasetError(InvalidDataError):
    """A dataset, folder or split that holds no images where images are needed."""


class UnknownClassError(BloodcellError, ValueError):
    """A class name that cannot be mapped to one of the dataset's classes."""


class UnknownNameError(BloodcellError, KeyError):
    """A registry name (backbone, head, recipe...) that is not registered.

    Subclasses ``KeyError`` like a dictionary lookup, but prints its message without quotes.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataFileNotFoundError(BloodcellError, FileNotFoundError):
    """A data file or folder that does not exist."""


class UnreadableFileError(BloodcellError, ValueError):
    """A file that exists but cannot be decoded (truncated JPEG, not an image, corrupt npz...)."""


class ChecksumError(BloodcellError, ValueError):
    """A downloaded or local file whose checksum differs from the published one."""


class DownloadError(BloodcellError, OSError):
    """A download that failed (no network, server error); the message names the offline alternative."""


class WeightsUnavailableError(BloodcellError, RuntimeError):
    """Pretrained weights that cannot be had (offline, or none published for this input)."""


class ConfigurationError(BloodcellError, ValueError):
    """Arguments that cannot work together (a keyword out of range, an unknown option...)."""


class IncompatibleWeightsError(BloodcellError, ValueError):
    """A weights file that was read but does not fit the model (another architecture or input)."""


class BloodcellWarning(UserWarning):
    """Base class of the warnings bloodcell issues (filter them with ``warnings.filterwarnings``)."""


class PixelRangeWarning(BloodcellWarning):
    """Float images whose values all lie in [-1, 1] where a model expects pixels in 0–255."""


class NotFittedError(BloodcellError, ValueError, AttributeError):
    """A detector or model used before ``fit`` (like scikit-learn's ``NotFittedError``)."""
