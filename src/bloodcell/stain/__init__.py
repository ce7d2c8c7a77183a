"""Stain normalisation: map each image's staining onto a target learnt from the training images.

Slides stained in another lab, or on another day, look different (redder eosin, paler nuclei), and
a classifier trained on one lab's colours fails on the other's. Stain normalisation removes that
difference before the model sees the image. Two methods, in the scikit-learn manner (``fit`` on
training images, then ``transform``):

- :class:`MacenkoNormalizer` (Macenko et al., 2009): separates each image into two stains (for
  May–Grünwald–Giemsa/Wright smears: the purple of the nuclei and the pink of cytoplasm, granules and
  red cells) in optical density space, then rebuilds it with the target's stain colours and stain
  amounts. Changes hue as well as intensity.
- :class:`ReinhardNormalizer` (Reinhard et al., 2001): matches the mean and standard deviation of
  each channel in the decorrelated lαβ colour space. Cheaper, moves the whole colour distribution,
  knows nothing about stains.

:class:`StainNormalization` is the same transform as a Keras layer: put it in the model (see
``stain_normalization=`` of :func:`bloodcell.build_classifier`) and it is saved in the ``.keras``
file with its fitted target, so inference applies exactly the transform used in training. The
layer runs batched TF ops (``tf.linalg.eigh`` on 3×3 covariances, percentiles by ``top_k`` of the tail and gather,
masked statistics); the NumPy ``transform`` computes the same thing in float64. They agree to
within one grey level on real images (the float32 layer versus the rounded float64 NumPy result).

Images that carry no stain to estimate from (blank, white, too few stained pixels, a single stain
colour) come back unchanged, never as NaN.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> normalizer = bc.stain.MacenkoNormalizer().fit(data)
    >>> normalizer.stain_matrix_.shape, normalizer.max_concentrations_.shape
    ((3, 2), (2,))
    >>> normalizer.transform(data.images[:2]).dtype
    dtype('uint8')
"""

from __future__ import annotations

from bloodcell._lazy import lazy_exports

# Public names and the module that defines each (PEP 562 lazy loading): the colour maths
# (:mod:`bloodcell.stain.density`) loads without Keras, for the NumPy corruptions.
_ATTRIBUTES = {
    "MacenkoNormalizer": "bloodcell.stain.macenko",
    "ReinhardNormalizer": "bloodcell.stain.reinhard",
    "StainNormalization": "bloodcell.stain.layer",
    "METHODS": "bloodcell.stain.methods",
    "from_config": "bloodcell.stain.methods",
    "make_normalizer": "bloodcell.stain.methods",
    # the masked percentiles, tested against NumPy's
    "_np_masked_percentile": "bloodcell.stain.percentile",
    "_tf_masked_percentile": "bloodcell.stain.percentile",
}
_SUBMODULES = ("base", "density", "layer", "macenko", "methods", "percentile", "reinhard")

__all__ = [name for name in _ATTRIBUTES if not name.startswith("_")]

__getattr__, __dir__ = lazy_exports(__name__, _ATTRIBUTES, _SUBMODULES)
