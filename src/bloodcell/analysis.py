"""Error analysis of a classifier: its worst predictions, the classes it mixes up, and where it looks.

- :func:`top_losses`: the images with the highest cross-entropy loss, with their true and predicted
  classes and both probabilities (a :class:`TopLosses`).
- :func:`most_confused`: the off-diagonal cells of the confusion matrix, largest first (a list of
  :class:`ConfusedPair`).
- :func:`grad_cam`: Grad-CAM heatmaps (Selvaraju et al. 2017): the gradient of a class score with
  respect to the last feature map of the backbone, averaged over space to weight its channels,
  and the ReLU of the weighted sum of channels, scaled to 0–1 and resized to the input.

:func:`bloodcell.plots.top_losses_gallery` and :func:`bloodcell.plots.grad_cam_overlays` draw them;
:func:`write_gallery` (``bloodcell evaluate --gallery DIR``) writes all three into a folder.

Example:
    >>> import numpy as np
    >>> from bloodcell.metrics import Report
    >>> report = Report.from_predictions([0, 0, 1, 1, 1], np.eye(3)[[0, 1, 0, 0, 1]], ("a", "b", "c"))
    >>> [(p.true, p.predicted, p.count) for p in most_confused(report)]
    [('b', 'a', 2), ('a', 'b', 1)]
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bloodcell._io import atomic_write_text
from bloodcell._validation import check_int, received
from bloodcell.errors import ConfigurationError, InvalidDataError, InvalidDtypeError

__all__ = [
    "ConfusedPair",
    "TopLosses",
    "backbone_view",
    "check_images",
    "feature_map_layer",
    "grad_cam",
    "most_confused",
    "top_losses",
    "write_confused_pairs",
    "write_gallery",
]

# Probabilities are clipped here before the log, as Keras's cross-entropy does.
_EPSILON = 1e-7


# ---------------------------------------------------------------------------------------------
# Top losses
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # holds arrays
class TopLosses:
    """The ``k`` images of a labelled set with the highest loss, highest first.

    Attributes:
        indices: Row of each image in the dataset (k,).
        losses: Cross-entropy of each, ``-log p(true class)`` (natural log), in decreasing order.
        y_true, y_pred: True and predicted class indices.
        prob_pred: Probability the model gave its predicted class.
        prob_true: Probability it gave the true class.
        images: The images themselves (k, H, W, 3), uint8.
        class_names: Names of the classes, in label order.
        ids: The images' ids in the dataset (file names), or None.
    """

    indices: np.ndarray
    losses: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    prob_pred: np.ndarray
    prob_true: np.ndarray
    images: np.ndarray
    class_names: tuple[str, ...]
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per image (index, id, true, predicted, prob_pred, prob_true, loss), for tables."""
        return [
            {
                "index": int(self.indices[i]),
                "id": None if self.ids is None else str(self.ids[i]),
                "true": self.class_names[int(self.y_true[i])],
                "predicted": self.class_names[int(self.y_pred[i])],
                "prob_pred": float(self.prob_pred[i]),
                "prob_true": float(self.prob_true[i]),
                "loss": float(self.losses[i]),
            }
            for i in range(len(self))
        ]


def _probabilities(model: Any, data: Any, batch_size: int, report: Any) -> np.ndarray:
    if report is not None:
        prob = getattr(report, "y_prob", None)
        if prob is None or len(prob) != len(data):
            raise InvalidDataError(
                f"report= must hold the predicted probabilities of these {len(data)} images (a Report from "
                "bloodcell.evaluate(model, data)); "
                f"{'it holds none' if prob is None else f'it holds {len(prob)}'}."
            )
        return np.asarray(prob, np.float64)
    from bloodcell.metrics import restrict_to_classes
    from bloodcell.pipeline import to_tf_dataset

    prob = model.predict(to_tf_dataset(data, batch_size=batch_size, shuffle=False), verbose=0)
    return restrict_to_classes(prob, model, data.class_names)


def top_losses(
    model: Any,
    data: Any,
    k: int = 16,
    *,
    batch_size: int = 64,
    report: Any = None,
) -> TopLosses:
    """The ``k`` images of ``data`` the model gets most wrong: highest cross-entropy first.

    Args:
        model: A classifier mapping 0–255 images to class probabilities (a ``.keras`` path works too).
        data: A labelled :class:`~bloodcell.datasets.BloodCellDataset`.
        k: How many images (all of them when the dataset is smaller).
        batch_size: Images per prediction batch.
        report: A :class:`~bloodcell.metrics.Report` of ``model`` on ``data`` (e.g. with test-time
            augmentation): its probabilities are used instead of predicting again.

    Returns:
        A :class:`TopLosses`. Ties in the loss keep the dataset's order.

    Example:
        >>> import bloodcell as bc, keras
        >>> data = bc.datasets.load_sample(per_class=2)
        >>> model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(8, activation="softmax")])
        >>> worst = top_losses(model, data, k=3)
        >>> len(worst), bool((worst.losses[:-1] >= worst.losses[1:]).all())
        (3, True)
    """
    from bloodcell.datasets import BloodCellDataset
    from bloodcell.models import as_model

    if not isinstance(data, BloodCellDataset):
        raise InvalidDtypeError(
            f"top_losses() takes a labelled BloodCellDataset. Received: data={type(data).__name__}."
        )
    data.check_not_empty("top_losses()")
    k = check_int(k, "k", minimum=1)
    model = as_model(model) if report is None else model
    prob = _probabilities(model, data, batch_size, report)
    labels = np.asarray(data.labels, np.int64)
    prob_true = prob[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(prob_true, _EPSILON, 1.0))
    order = np.argsort(-losses, kind="stable")[: min(k, len(labels))]
    pred = prob.argmax(axis=1)
    return TopLosses(
        indices=order,
        losses=losses[order],
        y_true=labels[order],
        y_pred=pred[order],
        prob_pred=prob[order, pred[order]],
        prob_true=prob_true[order],
        images=np.asarray(data.images[order]),
        class_names=tuple(data.class_names),
        ids=None if data.ids is None else np.asarray(data.ids)[order],
    )


# ---------------------------------------------------------------------------------------------
# Most confused pairs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfusedPair:
    """One off-diagonal cell of the confusion matrix.

    Attributes:
        true: The true class.
        predicted: The class predicted instead.
        count: How many images of ``true`` were predicted as ``predicted``.
        share: ``count`` over the number of images of ``true`` (the share of that class lost to it).
    """

    true: str
    predicted: str
    count: int
    share: float


def most_confused(
    report_or_model: Any,
    data: Any = None,
    *,
    min_count: int = 1,
    k: int | None = None,
    batch_size: int = 64,
) -> list[ConfusedPair]:
    """The (true, predicted) class pairs a model mixes up, from its confusion matrix, most first.

    Args:
        report_or_model: A :class:`~bloodcell.metrics.Report`, or a model (or ``.keras`` path) to
            evaluate on ``data``.
        data: The labelled dataset, when a model is given.
        min_count: Leave out pairs with fewer errors.
        k: At most this many pairs; None: all.
        batch_size: Images per prediction batch, when a model is given.

    Returns:
        :class:`ConfusedPair` objects ordered by count (largest first), then by share, then by
        class order.
    """
    from bloodcell.metrics import Report, evaluate

    min_count = check_int(min_count, "min_count", minimum=1)
    k = check_int(k, "k", minimum=1, allow_none=True)
    if isinstance(report_or_model, Report):
        report = report_or_model
    else:
        if data is None:
            raise ConfigurationError(
                "most_confused() needs the labelled data to evaluate a model on: most_confused(model, data), "
                "or pass a Report from bloodcell.evaluate()."
            )
        from bloodcell.models import as_model

        report = evaluate(as_model(report_or_model), data, batch_size=batch_size)
    counts = np.asarray(report.confusion_matrix, np.int64)
    support = counts.sum(axis=1)
    pairs = [
        ConfusedPair(
            true=report.class_names[i],
            predicted=report.class_names[j],
            count=int(counts[i, j]),
            share=float(counts[i, j] / support[i]),
        )
        for i in range(len(counts))
        for j in range(len(counts))
        if i != j and counts[i, j] >= min_count
    ]
    pairs.sort(key=lambda p: -p.share)  # stable sorts: by count first, then share, then class order
    pairs.sort(key=lambda p: -p.count)
    return pairs if k is None else pairs[:k]


def write_confused_pairs(pairs: Sequence[ConfusedPair], path: str | os.PathLike[str]) -> Path:
    """Write confused pairs as CSV (``true,predicted,count,share``) atomically; return the path.

    Example:
        >>> import tempfile, pathlib
        >>> out = write_confused_pairs([ConfusedPair("monocyte", "lymphocyte", 3, 0.1)],
        ...                            pathlib.Path(tempfile.mkdtemp()) / "pairs.csv")
        >>> out.read_text().splitlines()
        ['true,predicted,count,share', 'monocyte,lymphocyte,3,0.1000']
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true", "predicted", "count", "share"])
    for pair in pairs:
        writer.writerow([pair.true, pair.predicted, pair.count, f"{pair.share:.4f}"])
    return atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------
def _main_path(model: Any) -> list[tuple[Any, Any]]:
    """``(layer, its input tensor)`` along the model's graph from its input to its output.

    Walks back from the output through each node's first input, by the node this very graph
    uses: a layer's ``.input`` is its first call's, which for a Sequential model rebuilt on
    loading belongs to a discarded graph.
    """
    import keras

    steps = []
    tensor = model.outputs[0]
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None or isinstance(history[0], keras.layers.InputLayer):
            break
        layer, node_index = history[0], history[1]
        inputs = layer._inbound_nodes[node_index].input_tensors
        if not inputs:
            break
        steps.append((layer, inputs[0]))
        tensor = inputs[0]
    return steps[::-1]


def _feature_map(model: Any) -> tuple[Any, Any]:
    import keras

    from bloodcell.cells import CellCrop
    from bloodcell.stain import StainNormalization

    pixels = (keras.layers.InputLayer, CellCrop, StainNormalization)  # images, not features
    for layer, tensor in reversed(_main_path(model)):
        if len(tensor.shape) == 4 and not isinstance(tensor._keras_history[0], pixels):
            return layer, tensor
    raise ConfigurationError(
        f"Grad-CAM needs a feature map (N, h, w, D) inside the model, but no layer of {model.name!r} "
        f"takes one ({[layer.name for layer in model.layers]}): is the pooling inside the backbone?"
    )


def feature_map_layer(model: Any) -> Any:
    """The layer whose input is the feature map Grad-CAM explains: the last layer fed a 4-D tensor.

    For a :class:`~bloodcell.models.Classifier` that is its global pooling, fed the backbone's
    last feature map, whatever the backbone family and whatever stands in front of it (a cell
    crop, a stain normalisation); for a plain Keras CNN, its pooling or flattening layer. Layers
    inside nested models are not searched: a whole nested model counts as one layer.

    Raises:
        ConfigurationError: no layer of the model takes a feature map (N, h, w, D).
    """
    return _feature_map(model)[0]


def _front_output(model: Any) -> Any:
    """The tensor the backbone receives: the output of the model's cell crop / stain layers, if any."""
    from bloodcell.cells import CellCrop
    from bloodcell.stain import StainNormalization

    path = _main_path(model)
    outputs = [tensor for _, tensor in path[1:]] + [model.outputs[0]]
    front = [
        out for (layer, _), out in zip(path, outputs) if isinstance(layer, (CellCrop, StainNormalization))
    ]
    return front[-1] if front else model.inputs[0]


def _output_score(model: Any) -> tuple[Any, Any]:
    """(input tensor of the last layer, function mapping it to the class scores).

    The scores are the logits when the model ends in a softmax Dense layer (on its own or as the
    last layer of a Sequential head, as bloodcell heads do): the softmax couples the classes and
    saturates, so Grad-CAM's original choice is the score before it (a calibration temperature
    after the head is looked through). Otherwise the outputs.
    """
    import keras

    from bloodcell.calibration.temperature import TemperatureScaling

    path = _main_path(model)
    while len(path) > 1 and isinstance(path[-1][0], TemperatureScaling):
        path.pop()  # a temperature divides the logits by one positive number: same heatmaps
    last, last_input = path[-1]
    inner = last.layers if isinstance(last, keras.Model) else [last]
    final = inner[-1] if inner else last
    if isinstance(final, keras.layers.Dense) and final.activation is keras.activations.softmax:

        def logits(x: Any) -> Any:
            for layer in inner[:-1]:
                x = layer(x, training=False)
            return keras.ops.matmul(x, final.kernel) + (0.0 if final.bias is None else final.bias)

        return last_input, logits
    return last_input, lambda x: last(x, training=False)


def check_images(model: Any, images: Any) -> np.ndarray:
    """Images (N, H, W, 3) or one image (H, W, 3) for ``model``, as a float32 batch; else InvalidDataError."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    want = tuple(model.inputs[0].shape[1:])
    if arr.ndim != 4 or any(w is not None and w != a for w, a in zip(want, arr.shape[1:], strict=True)):
        raise InvalidDataError(
            f"grad_cam() needs images of shape (N, {', '.join(str(d) for d in want)}) for this model. "
            f"Received: images of shape {arr.shape}."
        )
    return arr.astype(np.float32)


def grad_cam(
    model: Any,
    images: Any,
    class_index: int | Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM heatmaps: where in each image the evidence for a class lies.

    The feature map explained is the one the model pools (for bloodcell classifiers the last
    feature map of the backbone, e.g. 3×3 for 96-px images at stride 32), found by
    :func:`feature_map_layer`; the class score is the logit before the softmax (see above). Each
    heatmap is ``ReLU(Σ_d α_d A_d)`` with ``α_d`` the spatial mean of ``∂score/∂A_d``, divided by
    its maximum and resized bilinearly to the input size. With a cell crop in the model the heatmap
    lies over the image the backbone saw (:func:`backbone_view`), not the input.

    Args:
        model: A classifier taking 0–255 images (a ``.keras`` path works too).
        images: Images (N, H, W, 3) or one image (H, W, 3), uint8 or float in 0–255.
        class_index: The class to explain: None (each image's predicted class), one index for all
            images, or one per image.
        batch_size: Images per gradient computation.

    Returns:
        Float32 heatmaps (N, H, W) in 0–1; all zeros where nothing speaks for the class.

    Example:
        >>> import bloodcell as bc
        >>> model = bc.build_classifier("mobilenetv3small", head="linear", weights=None)
        >>> heat = grad_cam(model, bc.datasets.load_sample(per_class=1).images[:2], class_index=3)
        >>> heat.shape, bool(heat.min() >= 0.0 and heat.max() <= 1.0)
        ((2, 96, 96), True)
    """
    import keras
    import tensorflow as tf

    from bloodcell.models import as_model

    model = as_model(model)
    arr = check_images(model, images)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    feature_map = _feature_map(model)[1]
    head_input, score = _output_score(model)
    probe = keras.Model(model.inputs[0], [feature_map, head_input], name=f"{model.name}_grad_cam")
    num_classes = int(model.outputs[0].shape[-1])
    if class_index is None:
        wanted = None
    else:
        wanted = np.broadcast_to(np.asarray(class_index), (len(arr),))
        if not np.issubdtype(wanted.dtype, np.integer) or wanted.min() < 0 or wanted.max() >= num_classes:
            raise ConfigurationError(
                f"class_index must be None or class indices in [0, {num_classes}). "
                f"{received('class_index', class_index)}"
            )
    out = []
    for start in range(0, len(arr), batch_size):
        x = tf.convert_to_tensor(arr[start : start + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(x)  # records every op from the pixels on, frozen layers included
            maps, hidden = probe(x, training=False)
            scores = score(hidden)
            picked = (
                tf.argmax(scores, axis=-1)
                if wanted is None
                else tf.constant(wanted[start : start + batch_size], tf.int64)
            )
            chosen = tf.gather(scores, picked, axis=1, batch_dims=1)
        grads = tape.gradient(chosen, maps)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        cam = tf.image.resize(cam[..., None], arr.shape[1:3], method="bilinear")[..., 0]
        out.append(np.clip(cam.numpy(), 0.0, 1.0).astype(np.float32))
    return np.concatenate(out)


def backbone_view(model: Any, images: Any, *, batch_size: int = 64) -> np.ndarray:
    """The images as the model's backbone sees them: after its cell crop and stain normalisation.

    Models without such layers return the images as they are (uint8). Grad-CAM heatmaps line up
    with these images.
    """
    import keras

    from bloodcell.models import as_model

    model = as_model(model)
    arr = check_images(model, images)
    front = _front_output(model)
    if front is model.inputs[0]:
        return np.clip(arr, 0, 255).astype(np.uint8)
    view = keras.Model(model.inputs[0], front).predict(arr, batch_size=batch_size, verbose=0)
    return np.clip(np.rint(view), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The gallery folder
# ---------------------------------------------------------------------------------------------
def write_gallery(
    model: Any,
    data: Any,
    directory: str | os.PathLike[str],
    *,
    report: Any = None,
    k: int = 16,
    grad_cam_images: int = 8,
    batch_size: int = 64,
) -> dict[str, Path]:
    """Write a model's error analysis on a labelled set into ``directory``.

    Files: ``top_losses.png`` (:func:`~bloodcell.plots.top_losses_gallery` of the ``k`` worst
    images), ``confused_pairs.csv`` (:func:`most_confused`), ``gradcam.png``
    (:func:`~bloodcell.plots.grad_cam_overlays` of the ``grad_cam_images`` worst images, for the
    predicted and the true class) and ``index.md``, which lists them with the tables. Each file is
    written atomically.

    Args:
        model: The classifier (or a ``.keras`` path).
        data: A labelled :class:`~bloodcell.datasets.BloodCellDataset`.
        directory: The folder (created if needed).
        report: A :class:`~bloodcell.metrics.Report` of the model on ``data`` (saves predicting again).
        k: Images in the top-losses gallery.
        grad_cam_images: Images in the Grad-CAM figure (the worst ones).
        batch_size: Images per batch.

    Returns:
        ``{"top_losses": path, "confused_pairs": path, "gradcam": path, "index": path}``.
    """
    from bloodcell import plots
    from bloodcell.metrics import evaluate
    from bloodcell.models import as_model

    grad_cam_images = check_int(grad_cam_images, "grad_cam_images", minimum=1)
    model = as_model(model)
    if report is None:
        report = evaluate(model, data, batch_size=batch_size)
    folder = Path(directory).expanduser()
    top = top_losses(model, data, k, report=report)
    pairs = most_confused(report)
    files = {
        "top_losses": plots.top_losses_gallery(top, folder / "top_losses.png"),
        "confused_pairs": write_confused_pairs(pairs, folder / "confused_pairs.csv"),
        "gradcam": plots.grad_cam_overlays(
            model,
            top.images[:grad_cam_images],
            folder / "gradcam.png",
            labels=top.y_true[:grad_cam_images],
            class_names=top.class_names,
            batch_size=batch_size,
        ),
    }
    files["index"] = atomic_write_text(folder / "index.md", _index_markdown(report, top, pairs))
    return files


def _index_markdown(report: Any, top: TopLosses, pairs: Sequence[ConfusedPair]) -> str:
    lines = [
        "# Error analysis",
        "",
        f"{report.n} images · accuracy {report.accuracy:.2%} · macro F1 {report.f1_macro:.2%}",
        "",
        "- [top_losses.png](top_losses.png): the images with the highest loss, −log p(true class)",
        "- [gradcam.png](gradcam.png): Grad-CAM of the worst images, for the predicted and the true class",
        "- [confused_pairs.csv](confused_pairs.csv): the confusion matrix's off-diagonal cells, most first",
        "",
        "## Most confused pairs",
        "",
        "| true | predicted | count | share of true class |",
        "|---|---|---:|---:|",
        *(f"| {p.true} | {p.predicted} | {p.count} | {p.share:.1%} |" for p in pairs[:20]),
        "",
        "## Top losses",
        "",
        "| # | image | true | predicted | p(pred) | p(true) | loss |",
        "|---:|---|---|---|---:|---:|---:|",
        *(
            f"| {r['index']} | {r['id'] or ''} | {r['true']} | {r['predicted']} | {r['prob_pred']:.1%} | "
            f"{r['prob_true']:.1%} | {r['loss']:.2f} |"
            for r in top.rows()
        ),
        "",
    ]
    if not pairs:
        lines.insert(lines.index("## Top losses") - 1, "No image was misclassified.\n")
    return "\n".join(lines)
