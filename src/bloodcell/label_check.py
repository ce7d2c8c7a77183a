"""Label checks in one call: out-of-fold probabilities from k models, then the suspect labels, ranked.

A network memorises its training labels, so it cannot point at its own label errors. Here each
image is predicted by a model that never saw it: the data is cut into ``folds`` stratified parts
(identical images kept together), one model per fold trains on the other parts, and the held-out
part's probabilities are kept. :class:`~bloodcell.outliers.LabelIssues` (confident learning) then
ranks the images whose label the out-of-fold model disagrees with.

Each fold is an ordinary run of :func:`bloodcell.experiments.run` in ``directory/fold-K``, and its
held-out probabilities are written next to it, so a call that is interrupted resumes where it
stopped: finished folds are read back, an unfinished one resumes from its last epoch.

Example:
    >>> import bloodcell as bc
    >>> data = bc.datasets.load_sample(per_class=5)
    >>> quick = bc.experiments.Config.preset("cpu", epochs=1, input_shape=(32, 32, 3),
    ...                                      precise_batchnorm=None, tta=None)
    >>> check = bc.check_labels(data, config=quick, folds=2, directory=None, verbose=0)  # doctest: +SKIP
    >>> check.ranked[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_path, atomic_write_text
from bloodcell._validation import check_int, check_number, check_seed, received
from bloodcell.datasets import BloodCellDataset, kfold_indices
from bloodcell.errors import ConfigurationError, InvalidDataError, UnreadableFileError

__all__ = ["LabelCheck", "check_labels", "out_of_fold_probabilities"]

_PROBABILITIES = "held_out_probabilities.npz"


def _config(config: Any) -> Any:
    from bloodcell.experiments import Config

    if isinstance(config, str):
        return Config.preset(config)
    if isinstance(config, Config):
        return config
    raise ConfigurationError(
        "config must be a recipe name ('cpu', 'robust', 'seed') or a bloodcell.experiments.Config. "
        f"{received('config', config)}"
    )


def _read_fold(path: Path, positions: np.ndarray, num_classes: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            kept, probs = saved["positions"], saved["probabilities"]
    except (OSError, ValueError, KeyError) as err:
        raise UnreadableFileError(
            f"{path} cannot be read ({err}); delete it and that fold is predicted again."
        ) from err
    if not np.array_equal(kept, positions) or probs.shape != (len(positions), num_classes):
        raise InvalidDataError(
            f"{path} holds another fold's probabilities (other images or classes): the data, folds "
            "or seed changed since it was written. Give another directory or delete that one."
        )
    return probs


def _write_fold(path: Path, positions: np.ndarray, probs: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, positions=positions, probabilities=probs.astype(np.float32))


def out_of_fold_probabilities(
    data: BloodCellDataset,
    *,
    config: Any = "cpu",
    folds: int = 5,
    seed: int = 0,
    val: float = 0.1,
    directory: str | os.PathLike[str] | None = None,
    verbose: int | str = "auto",
) -> np.ndarray:
    """Class probabilities of every image from a model that did not train on it.

    Args:
        data: Labelled images.
        config: The recipe of each fold's model: a name (``"cpu"``) or a
            :class:`~bloodcell.experiments.Config`. A cheap recipe is enough to find label errors.
        folds: How many parts (and models); each model trains on ``(folds - 1) / folds`` of the data.
        seed: Seeds the folds, the inner validation split and each model.
        val: Share of each fold's training part kept aside to choose the best epoch (never the
            held-out part, whose labels are the ones under suspicion).
        directory: Where the fold runs and their probabilities go, so an interrupted call resumes;
            None: a temporary folder, removed afterwards.
        verbose: Keras progress output of each run.

    Returns:
        float32 array (N, C) in the order of ``data``.
    """
    from bloodcell.datasets import split
    from bloodcell.experiments import run
    from bloodcell.tta import predict

    if not isinstance(data, BloodCellDataset):
        raise InvalidDataError(
            "check_labels needs a labelled bloodcell.datasets.BloodCellDataset. "
            f"Received: data of type {type(data).__name__}."
        )
    data.check_not_empty("out_of_fold_probabilities()")
    config = _config(config)
    folds = check_int(folds, "folds", minimum=2)
    seed = check_seed(seed)
    val = check_number(val, "val", low=0, high=0.5, low_open=True)
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="bloodcell-labels-") as scratch:
            return out_of_fold_probabilities(
                data, config=config, folds=folds, seed=seed, val=val, directory=scratch, verbose=verbose
            )
    root = Path(directory)
    probs = np.zeros((len(data), data.num_classes), np.float32)
    for k, (rest, positions) in enumerate(kfold_indices(data, folds, seed=seed)):
        fold_dir = root / f"fold-{k}"
        held = _read_fold(fold_dir / _PROBABILITIES, positions, data.num_classes)
        if held is None:
            train, inner_val = split(data.subset(rest), val=val, test=0, seed=seed)
            result = run(
                config, train, inner_val, seed=seed, name=f"fold-{k}", output_dir=root, verbose=verbose
            )
            model = result.load_model()
            held = predict(model, data.subset(positions), config.tta, batch_size=config.batch_size)
            _write_fold(fold_dir / _PROBABILITIES, positions, held)
        probs[positions] = held
    return probs


@dataclass(frozen=True)
class LabelCheck:
    """Suspect labels, most suspect first.

    Attributes:
        ranked: Positions in the dataset of the flagged images, most suspect first.
        scores: Per image: ``max over other classes of p - p(given label)`` (positive: another class
            is more probable than the label).
        flags: Per image: flagged by the confident-learning rule.
        suggested: Per image: the most probable class other than the given label.
        probabilities: The out-of-fold probabilities used (N, C).
        class_names: The dataset's class names.
    """

    ranked: np.ndarray
    scores: np.ndarray
    flags: np.ndarray
    suggested: np.ndarray
    probabilities: np.ndarray
    class_names: tuple[str, ...]

    def rows(self, data: BloodCellDataset, top: int | None = None) -> list[dict[str, Any]]:
        """One dict per suspect (position, id, given, suggested, score), most suspect first."""
        picked = self.ranked if top is None else self.ranked[: check_int(top, "top", minimum=0)]
        return [
            {
                "position": int(i),
                "id": None if data.ids is None else str(data.ids[i]),
                "given": self.class_names[int(data.labels[i])],
                "suggested": self.class_names[int(self.suggested[i])],
                "score": round(float(self.scores[i]), 4),
            }
            for i in picked
        ]

    def to_csv(self, data: BloodCellDataset, path: str | os.PathLike[str]) -> Path:
        """Write the suspects as CSV (atomic), most suspect first."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, ["position", "id", "given", "suggested", "score"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(self.rows(data))
        return atomic_write_text(path, buffer.getvalue())

    def gallery(self, data: BloodCellDataset, path: str | os.PathLike[str], *, top: int = 24) -> Path:
        """A PNG of the ``top`` most suspect images, each titled with its position, label and suggestion."""
        from bloodcell.plots import label_gallery

        return label_gallery(data, self.rows(data, top), path)


def check_labels(
    data: BloodCellDataset,
    *,
    pred_probs: Any = None,
    config: Any = "cpu",
    folds: int = 5,
    seed: int = 0,
    margin: float = 0.0,
    directory: str | os.PathLike[str] | None = None,
    verbose: int | str = "auto",
) -> LabelCheck:
    """Find the images whose label is probably wrong, ranked, in one call.

    Trains ``folds`` models (:func:`out_of_fold_probabilities`) unless ``pred_probs`` are given,
    then applies :class:`~bloodcell.outliers.LabelIssues`. Images are ranked by how much more
    probable the best other class is than the given label.

    Args:
        data: Labelled images.
        pred_probs: Out-of-fold probabilities (N, C) you already have; skips the training.
        config, folds, seed, directory, verbose: As in :func:`out_of_fold_probabilities`.
        margin: How much more probable another class must be than the label to flag an image.

    Returns:
        A :class:`LabelCheck`.
    """
    from bloodcell.outliers import LabelIssues

    if pred_probs is None:
        pred_probs = out_of_fold_probabilities(
            data, config=config, folds=folds, seed=seed, directory=directory, verbose=verbose
        )
    detector = LabelIssues(pred_probs=pred_probs, margin=margin).fit(data)
    detection = detector.detect(data)
    probs = np.asarray(pred_probs, np.float32)
    others = probs.astype(np.float64)
    others[np.arange(len(data)), data.labels] = -np.inf
    flagged = np.flatnonzero(detection.flags)
    ranked = flagged[np.argsort(-detection.scores[flagged], kind="stable")]
    return LabelCheck(
        ranked=ranked,
        scores=np.asarray(detection.scores, np.float32),
        flags=np.asarray(detection.flags, bool),
        suggested=others.argmax(axis=1),
        probabilities=probs,
        class_names=tuple(data.class_names),
    )
