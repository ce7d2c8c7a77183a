"""Import imgaug 0.4.0 on NumPy 2: the one place that restores ``np.sctypes`` before imgaug loads.

imgaug 0.4.0 (2020, unmaintained) reads ``np.sctypes`` at import time; NumPy 2.0 removed it, so
``import imgaug`` raises ``AttributeError`` there. Putting the NumPy 1 table back before the import
makes imgaug work, its RandAugment included. (``ElasticTransformation`` and
``pillike.Autocontrast`` still fail on NumPy 2 for other reasons.) Pinning NumPy 1.26 does not
help: imgaug then fails on ``np.bool``.

Every bloodcell module imports imgaug through :func:`import_imgaug`, never directly.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["import_imgaug"]


def _restore_sctypes() -> None:
    if "sctypes" in vars(np):
        return
    np.sctypes = {  # noqa: NPY201 - the NumPy 1.x table, put back on purpose
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }


def import_imgaug() -> ModuleType:
    """Return ``imgaug.augmenters`` (imported as ``iaa`` in imgaug's docs), working on NumPy 1 and 2.

    Raises:
        ImportError: imgaug is not installed; the message says how to install it.

    Example:
        >>> iaa = import_imgaug()
        >>> type(iaa.Fliplr(0.5)).__name__
        'Fliplr'
    """
    _restore_sctypes()
    try:
        import imgaug.augmenters as iaa
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "imgaug":
            raise ImportError(
                "imgaug is not installed; install it with `pip install bloodcell[imgaug]` "
                "(or `pip install imgaug`)."
            ) from None
        raise
    return iaa
