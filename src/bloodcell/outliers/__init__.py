"""Outlier detection: duplicates, non-blood images, degenerate images, embedding outliers, label issues.

One detector interface in the scikit-learn manner (``fit``, ``score``, ``predict``, ``explain``)
and :func:`find_outliers`, which runs several detectors and returns an :class:`OutlierReport`.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample()
    >>> report = bc.outliers.find_outliers(data)
    >>> clean = report.clean(data)
    >>> len(clean) <= len(data)
    True
"""

from bloodcell.outliers.base import Detection, DuplicateGroup, OutlierDetector
from bloodcell.outliers.duplicates import ExactDuplicates, NearDuplicates
from bloodcell.outliers.embedding import EmbeddingOutliers, embed
from bloodcell.outliers.labels import LabelIssues
from bloodcell.outliers.perceptual import hamming_distances, hash_groups, perceptual_hash
from bloodcell.outliers.quality import ImageQuality, quality_measures
from bloodcell.outliers.report import OutlierReport, default_detectors, find_outliers
from bloodcell.outliers.stain import StainProfile, colour_features

__all__ = [
    "Detection",
    "DuplicateGroup",
    "EmbeddingOutliers",
    "ExactDuplicates",
    "ImageQuality",
    "LabelIssues",
    "NearDuplicates",
    "OutlierDetector",
    "OutlierReport",
    "StainProfile",
    "colour_features",
    "default_detectors",
    "embed",
    "find_outliers",
    "hamming_distances",
    "hash_groups",
    "perceptual_hash",
    "quality_measures",
]
