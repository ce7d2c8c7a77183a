"""Datasets: the :class:`BloodCellDataset` container, loaders, leak-free splits and class balancing.

The ``tf.data`` pipeline is its own stage, :func:`bloodcell.pipeline.to_tf_dataset`; the old name
``bloodcell.datasets.to_tf_dataset`` still works for one release, with a :class:`DeprecationWarning`.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample()
    >>> train, val, test = bc.datasets.split(data, val=0.1, test=0.1, seed=0)
    >>> len(train) + len(val) + len(test)
    800
"""

from bloodcell._deprecation import moved_names
from bloodcell.datasets.balance import (
    class_weights,
    oversample,
    oversample_indices,
    smote,
    undersample,
    undersample_indices,
)
from bloodcell.datasets.core import BloodCellDataset, as_images, as_label_indices, concat
from bloodcell.datasets.folder import IMAGE_EXTENSIONS, SkippedFile, list_image_files, load_folder
from bloodcell.datasets.hashing import identical_groups, image_digests
from bloodcell.datasets.imageio import decode_image, resize_images
from bloodcell.datasets.medmnist import load_medmnist, medmnist_file_info
from bloodcell.datasets.npz import DatasetSplits, load_npz
from bloodcell.datasets.sample import load_sample, sample_attribution, write_sample_folder
from bloodcell.datasets.source import load
from bloodcell.datasets.splitting import duplicate_groups, kfold, kfold_indices, split, split_indices

__all__ = [
    "BloodCellDataset",
    "DatasetSplits",
    "IMAGE_EXTENSIONS",
    "SkippedFile",
    "as_images",
    "as_label_indices",
    "class_weights",
    "concat",
    "decode_image",
    "duplicate_groups",
    "identical_groups",
    "image_digests",
    "kfold",
    "kfold_indices",
    "list_image_files",
    "load",
    "load_folder",
    "load_medmnist",
    "load_npz",
    "load_sample",
    "medmnist_file_info",
    "oversample",
    "oversample_indices",
    "resize_images",
    "sample_attribution",
    "smote",
    "split",
    "split_indices",
    "undersample",
    "undersample_indices",
    "write_sample_folder",
]

# ``to_tf_dataset`` moved to its own stage; the old name is served for one release with a warning.
__getattr__ = moved_names(__name__, {"to_tf_dataset": "bloodcell.pipeline"})
