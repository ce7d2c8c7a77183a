"""Deprecated: the ``tf.data`` pipeline moved to its own stage, :mod:`bloodcell.pipeline`.

Every name still resolves here, to the same object, with a :class:`DeprecationWarning`.
"""

from bloodcell._deprecation import moved_module

__getattr__, __dir__ = moved_module(__name__, "bloodcell.pipeline")
