"""Few-shot adaptation: a trained model fine-tuned on a few labelled cells of another lab.

A lab that labels k cells of each class (k = 1, 5, 10, 20) can adapt a model trained on PBC to
its own microscope and stain. :func:`few_shot` fine-tunes a copy on those cells with the library's
:class:`~bloodcell.Trainer`, and guards against forgetting what the model knew:

* each epoch also replays as many training images of the original classes (``source``), so the
  classes the lab has no labels for, and PBC itself, are kept;
* a low learning rate (1e-4: a tenth of the recipes'), few epochs, flips and rotations;
* ``train="batchnorm_head"`` or ``"head"`` keep the convolutions as they are, when even that is too
  much change (the whole network learns by default: another lab's colours reach the first layers).

:func:`sample_support` draws the k cells per class of the evaluation protocol (the rest of the
lab's images are what the adapted model is scored on).

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=4)
    >>> support, rest = sample_support(data, k=1, seed=0)
    >>> len(support), len(rest)
    (8, 24)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bloodcell._validation import check_choice, check_int, check_positive, check_seed
from bloodcell.datasets.core import BloodCellDataset, concat
from bloodcell.datasets.hashing import identical_groups
from bloodcell.errors import EmptyDatasetError, InvalidDataError, InvalidDtypeError

__all__ = ["TRAINABLE", "few_shot", "sample_support"]

#: What :func:`few_shot` lets learn: everything, the BatchNorm layers and the head, or the head only.
TRAINABLE = ("all", "batchnorm_head", "head")


def sample_support(
    data: BloodCellDataset, k: int, *, seed: int = 0, groups: Any = None
) -> tuple[BloodCellDataset, BloodCellDataset]:
    """``k`` cells of each class drawn at random with ``seed`` (the support), and the rest.

    A cell photographed or copied several times (shifted, re-cropped, recoloured) is one cell:
    ``groups`` gives each image the id of its cell. ``k`` cells are drawn per class, the first
    image of each joins the support, and no image of a drawn cell is left in the rest, so the
    adapted model is never scored on a copy of a cell it was shown.

    Args:
        data: The lab's labelled images.
        k: Cells per class in the support.
        seed: Seeds the draw.
        groups: One id per image (e.g. :func:`bloodcell.cells.same_cell_groups`); None: identical
            images form a group (:func:`bloodcell.datasets.identical_groups`), every other image
            is its own cell.

    Raises:
        EmptyDatasetError: a class has ``k`` cells or fewer (none would be left to evaluate on).
        InvalidDataError: ``groups`` does not hold one integer id per image.

    Example:
        >>> import numpy as np, bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=4)
        >>> cells = np.repeat(np.arange(16), 2)  # say each cell was photographed twice
        >>> support, rest = sample_support(data, k=1, seed=0, groups=cells)
        >>> len(support), len(rest)
        (8, 16)
    """
    if not isinstance(data, BloodCellDataset):
        raise InvalidDtypeError(
            f"sample_support() takes a BloodCellDataset. Received: data={type(data).__name__}."
        )
    k = check_int(k, "k", minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    groups = identical_groups(data.images) if groups is None else _group_ids(groups, len(data))
    support, drawn = [], []
    for label in np.unique(data.labels):
        rows = np.flatnonzero(data.labels == label)
        cells, first = np.unique(groups[rows], return_index=True)
        cells = cells[np.argsort(first)]  # in the order of their first image, as the rows are
        if len(cells) <= k:
            raise EmptyDatasetError(
                f"class {data.class_names[label]!r} has {len(cells)} cells ({len(rows)} images): k={k} "
                "would leave none to evaluate on."
            )
        for cell in rng.choice(cells, k, replace=False):
            support.append(rows[groups[rows] == cell][0])
            drawn.append(cell)
    support_rows = np.sort(np.asarray(support))
    rest = np.flatnonzero(~np.isin(groups, drawn))
    return data.subset(support_rows), data.subset(rest)


def _group_ids(groups: Any, n: int) -> np.ndarray:
    ids = np.asarray(groups)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise InvalidDataError(
            f"groups must hold one integer id per image ({n}). Received: groups of shape {ids.shape} and "
            f"dtype {ids.dtype}; bloodcell.cells.same_cell_groups(data) gives such ids."
        )
    return ids


def _in_model_classes(data: BloodCellDataset, names: tuple[str, ...]) -> BloodCellDataset:
    """``data`` with its labels counted in the model's classes (the lab's five of the eight)."""
    if data.class_names == names:
        return data
    unknown = [c for c in data.class_names if c not in names]
    if unknown:
        raise InvalidDataError(
            f"The support set's classes {unknown} are not among the model's {list(names)}; name the lab's "
            "classes as the model does."
        )
    mapping = np.array([names.index(c) for c in data.class_names], np.int64)
    return BloodCellDataset(data.images, mapping[data.labels], names)


def _replay(source: BloodCellDataset, names: tuple[str, ...], per_class: int, seed: int) -> BloodCellDataset:
    source = _in_model_classes(source, names)
    rng = np.random.default_rng(seed)
    rows = [
        rng.choice(np.flatnonzero(source.labels == label), per_class, replace=False)
        for label in np.unique(source.labels)
        if np.count_nonzero(source.labels == label) >= per_class
    ]
    return source.subset(np.sort(np.concatenate(rows)))


def _set_trainable(model: Any, train: str) -> None:
    """Let the layers ``train`` names learn and freeze the others (leaf by leaf)."""
    import keras

    model.trainable = True
    if train == "all":
        return
    names = [layer.name for layer in model.layers]
    head = model.get_layer("head") if "head" in names else model.layers[-1]
    in_head = {id(layer) for layer in head._flatten_layers(include_self=True)}
    for layer in model._flatten_layers(include_self=False):
        if list(layer._flatten_layers(include_self=False)):
            continue  # a container: its leaves decide
        norm = train == "batchnorm_head" and isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = id(layer) in in_head or norm


def few_shot(
    model: Any,
    support: BloodCellDataset,
    *,
    source: BloodCellDataset | None = None,
    train: str = "all",
    epochs: int = 30,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    augment: Any = "geometric",
    seed: int = 0,
) -> Any:
    """Fine-tune a copy of ``model`` on a few labelled cells of another lab; ``model`` is untouched.

    Args:
        model: A trained classifier (e.g. a run's ``model.keras``, loaded).
        support: The lab's labelled cells (k per class); its class names must be among the model's
            (five white-cell classes for an eight-class model are fine).
        source: Images of the classes the model was trained on (e.g. PBC training images): each
            class contributes as many images as the support's largest class, replayed with them,
            so the model keeps what it knew. None: the support alone.
        train: ``"all"`` (default), ``"batchnorm_head"`` or ``"head"``: which layers learn.
        epochs: Passes over support (and replay).
        learning_rate: Adam's learning rate.
        batch_size: Images per step.
        augment: ``"geometric"`` (flips, rotations, shifts; default), None, or any augmenter.
        seed: Seeds the replay draw, the order and the augmentation.

    Returns:
        A new, uncompiled model fine-tuned on the support.

    Example:
        >>> import bloodcell as bc
        >>> data = bc.datasets.load_sample(per_class=3)
        >>> model = bc.build_classifier("mobilenetv3small", head="linear", weights=None)
        >>> support, _ = sample_support(data, k=1)
        >>> adapted = few_shot(model, support, epochs=1, augment=None)
        >>> adapted.output_shape
        (None, 8)
    """
    from bloodcell.classes import model_class_names
    from bloodcell.models import copy_model
    from bloodcell.training import Trainer

    if not isinstance(support, BloodCellDataset):
        raise InvalidDtypeError(
            f"few_shot() takes the support set as a BloodCellDataset. Received: support={type(support).__name__}."
        )
    support.check_not_empty("few_shot()")
    check_choice(train, "train", TRAINABLE)
    check_int(epochs, "epochs", minimum=1)
    check_positive(learning_rate, "learning_rate")
    seed = check_seed(seed)
    names = model_class_names(model)
    data = _in_model_classes(support, names)
    if source is not None:
        per_class = int(np.bincount(support.labels).max())
        data = concat([data, _replay(source, names, per_class, seed)])
    if augment == "geometric":
        from bloodcell.augment import RandomGeometric

        augment = RandomGeometric()
    adapted = copy_model(model)
    _set_trainable(adapted, train)
    trainer = Trainer(
        adapted,
        optimizer="adam",
        learning_rate=learning_rate,
        batch_size=min(batch_size, len(data)),
        augment=augment,
        monitor="loss",
        reduce_lr_patience=None,
        early_stopping_patience=None,
        restore_best=False,
        seed=seed,
        verbose=0,
    )
    trainer.fit(data, None, epochs=epochs)
    return adapted
