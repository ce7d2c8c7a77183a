"""What every stain normaliser shares: parameters, fitting over batches, ``transform``, configs.

A normaliser family (:mod:`~bloodcell.stain.macenko`, :mod:`~bloodcell.stain.reinhard`) supplies
the per-image estimate, how the fitted target is made from the estimates, and the transform in
NumPy (float64) and in TensorFlow (for :class:`~bloodcell.stain.StainNormalization`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bloodcell.errors import ConfigurationError, EmptyDatasetError, NotFittedError

if TYPE_CHECKING:
    from bloodcell.stain.layer import StainNormalization

__all__ = ["Normalizer", "as_image_batch"]


def as_image_batch(images: Any, what: str) -> np.ndarray:
    """uint8 (N, H, W, 3) from a BloodCellDataset, an (N, H, W, 3) or one (H, W, 3) uint8 array."""
    from bloodcell.datasets import BloodCellDataset, as_images

    if isinstance(images, BloodCellDataset):
        images.check_not_empty(what)
        return images.images
    arr = np.asarray(images)
    arr = as_images(arr[None] if arr.ndim == 3 else arr, name=f"{what} images")
    if len(arr) == 0:
        raise EmptyDatasetError(f"{what} got no images.")
    return arr


class Normalizer:
    """What both normalisers share: parameters, fitting over batches, transform, config."""

    method: str = ""
    _fitted_names: tuple[str, ...] = ()  # the fitted target's attributes
    _target_keys: tuple[str, ...] = ()  # the per-image estimates the target is the median of

    # ---------------------------------------------------------------- sklearn-style API
    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run (or fitted values were given)."""
        return all(getattr(self, name, None) is not None for name in self._fitted_names)

    def _check_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__}.{what} needs a fitted target: call fit(training_images) first."
            )

    def fit(self, images: Any) -> Any:
        """Learn the target from training images: the median of the per-image estimates.

        Images that carry no stain to estimate from (see the class docstring) are left out. At most
        ``max_images`` images, drawn at random with ``seed``, are used.

        Args:
            images: A :class:`~bloodcell.datasets.BloodCellDataset` or uint8 images (N, H, W, 3).

        Returns:
            The normaliser itself, fitted.

        Raises:
            EmptyDatasetError: no image (or no usable image) to fit on.
        """
        arr = as_image_batch(images, f"{type(self).__name__}.fit()")
        if self.max_images is not None and len(arr) > self.max_images:
            pick = np.random.default_rng(self.seed).choice(len(arr), self.max_images, replace=False)
            arr = arr[np.sort(pick)]
        # Keep only the per-image summaries: the per-pixel arrays would hold N x P floats.
        estimates = [
            {key: est[key] for key in (*self._target_keys, "valid")}
            for est in map(self._np_estimate, np.array_split(arr, -(-len(arr) // self.batch_size)))
        ]
        merged = {key: np.concatenate([e[key] for e in estimates]) for key in (*self._target_keys, "valid")}
        valid = merged.pop("valid")
        if not valid.any():
            raise EmptyDatasetError(
                f"{type(self).__name__}.fit(): none of the {len(arr)} images has enough stained pixels "
                "to estimate a target from; fit on real, stained training images."
            )
        self._set_target({key: value[valid] for key, value in merged.items()})
        self.n_fitted_images_ = int(valid.sum())
        return self

    def transform(self, images: Any) -> Any:
        """Normalise images to the fitted target (NumPy, float64, in batches of ``batch_size``).

        Args:
            images: uint8 images (N, H, W, 3) or one image (H, W, 3), or a
                :class:`~bloodcell.datasets.BloodCellDataset`.

        Returns:
            uint8 images of the same shape (a dataset with its images replaced, for a dataset).
            Images with nothing to estimate the stain from are returned unchanged.
        """
        from bloodcell.datasets import BloodCellDataset

        self._check_fitted("transform()")
        arr = as_image_batch(images, f"{type(self).__name__}.transform()")
        out = np.empty_like(arr)
        for start in range(0, len(arr), self.batch_size):
            chunk = arr[start : start + self.batch_size]
            out[start : start + len(chunk)] = np.clip(np.rint(self._np_transform(chunk)), 0, 255)
        if isinstance(images, BloodCellDataset):
            return images.replace(images=out)
        return out[0] if np.asarray(images).ndim == 3 else out

    def fit_transform(self, images: Any) -> Any:
        """:meth:`fit` then :meth:`transform` on the same images."""
        return self.fit(images).transform(images)

    def to_layer(self, name: str = "stain_normalization") -> StainNormalization:
        """The fitted transform as a Keras layer (for a model; saved with it)."""
        from bloodcell.stain.layer import StainNormalization

        self._check_fitted("to_layer()")
        return StainNormalization(self, name=name)

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters and fitted target as plain JSON values (``from_config`` rebuilds it)."""
        config: dict[str, Any] = {"method": self.method, **self.get_params()}
        for name in self._fitted_names:
            value = getattr(self, name, None)
            config[name] = None if value is None else np.asarray(value, np.float64).tolist()
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Rebuild a normaliser from :meth:`get_config`."""
        config = dict(config)
        method = config.pop("method", cls.method)
        if method != cls.method:
            raise ConfigurationError(f"{cls.__name__}.from_config() got a {method!r} config.")
        fitted = {name: config.pop(name, None) for name in cls._fitted_names}
        config.pop("n_fitted_images_", None)
        normalizer = cls(**config)
        for name, value in fitted.items():
            setattr(normalizer, name, None if value is None else np.asarray(value, np.float64))
        return normalizer

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params}){'' if self.is_fitted else ' (not fitted)'}"

    # ---------------------------------------------------------------- per method
    def _np_estimate(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_target(self, estimates: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _np_transform(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _tf_transform(self, images: Any) -> Any:
        raise NotImplementedError
