"""Benchmark: how far stain normalisation brings re-stained real cells back to the training stain.

Fits each normaliser (``bc.stain.MacenkoNormalizer``, ``bc.stain.ReinhardNormalizer``) on 400 cells
of the bundled real sample (every second image) and transforms 50 others (every sixteenth, offset
by one), as given and re-stained: after colour deconvolution (``skimage.color.hed_from_rgb``) their
haematoxylin and eosin amounts are scaled, then the image is recomposed. The distance is the
Euclidean distance between the per-channel RGB means and standard deviations of the 50 images and
those of the 400 training images, in grey levels (0 = the same colour statistics).

With ``--timing`` it also times fitting on 1,000 pbc96/val images and transforming all 1,743, in
NumPy and inside a Keras model (the saved layer), and reports how far the two paths differ.

Usage::

    python benchmarks/stain.py                       # the table of docs/guide/stain_tta.rst
    python benchmarks/stain.py --timing [--data PATH] [--out runs/stain]

``--data`` (for ``--timing``) defaults to ``<repo>/../shared/data`` and must hold ``pbc96/val``.
"""

from __future__ import annotations

from pathlib import Path

import _harness as h
import numpy as np

import bloodcell as bc

# (haematoxylin, eosin) scale of each re-stained set, as in the guide's table.
SHIFTS = {
    "same staining as training": (1.0, 1.0),
    "paler (H x 0.6, E x 0.6)": (0.6, 0.6),
    "less H, more E (x 0.7, x 1.4)": (0.7, 1.4),
    "more H, less E (x 1.5, x 0.6)": (1.5, 0.6),
    "darker (H x 1.3, E x 1.3)": (1.3, 1.3),
}


def restain(images: np.ndarray, h_scale: float, e_scale: float) -> np.ndarray:
    """Scale the haematoxylin and eosin optical densities of uint8 RGB images."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    od = -np.log((images.astype(np.float64) + 1.0) / 256.0)
    hed = od @ hed_from_rgb * np.array([h_scale, e_scale, 1.0])
    return np.clip(np.rint(256.0 * np.exp(-(hed @ rgb_from_hed)) - 1.0), 0, 255).astype(np.uint8)


def colour_stats(images: np.ndarray) -> np.ndarray:
    pixels = images.reshape(-1, 3).astype(np.float64)
    return np.concatenate([pixels.mean(0), pixels.std(0)])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(colour_stats(a) - colour_stats(b)))


def quality_table() -> str:
    data = bc.datasets.load_sample()
    train = data.subset(np.arange(0, len(data), 2))
    test = data.subset(np.arange(1, len(data), 16)).images
    normalizers = {
        "Macenko": bc.stain.MacenkoNormalizer().fit(train),
        "Reinhard": bc.stain.ReinhardNormalizer().fit(train),
    }
    lines = [
        f"{len(train)} training cells, {len(test)} test cells (bundled sample); distance in grey levels",
        "",
        "| images | as given | after Macenko | after Reinhard |",
        "|---|---:|---:|---:|",
    ]
    for label, (h_scale, e_scale) in SHIFTS.items():
        images = test if (h_scale, e_scale) == (1.0, 1.0) else restain(test, h_scale, e_scale)
        row = [distance(images, train.images)]
        row += [distance(n.transform(images), train.images) for n in normalizers.values()]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    return "\n".join(lines)


def timing(data_root: Path) -> str:
    import keras

    (val,) = h.load_pbc96(data_root, "val", verbose=False)
    lines = []
    for method in ("macenko", "reinhard"):
        normalizer = bc.stain.make_normalizer(method, max_images=None)
        fit_s = h.timed(normalizer.fit, val.images[:1000])
        with h.Stopwatch() as watch:
            numpy_out = normalizer.transform(val.images)
        inputs = keras.Input((96, 96, 3))
        model = keras.Model(inputs, normalizer.to_layer()(inputs))
        ds = bc.pipeline.to_tf_dataset(val, batch_size=64, shuffle=False).map(lambda x, y: x)
        model.predict(ds.take(1), verbose=0)  # trace once, outside the timing
        with h.Stopwatch() as layer_watch:
            layer_out = model.predict(ds, verbose=0)
        diff = np.abs(layer_out - numpy_out.astype(np.float64))
        lines.append(
            f"{method}: fit on 1,000 {fit_s:.2f} s; transform {len(val)} in NumPy {watch.wall:.2f} s, "
            f"in a Keras model (batch 64) {layer_watch.wall:.2f} s; layer vs NumPy max |diff| {diff.max():.3f}, "
            f"mean {diff.mean():.4f} grey levels"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = h.parser(__file__, __doc__, data="pbc96/val (for --timing)")
    parser.add_argument("--timing", action="store_true", help="also time fit/transform on pbc96/val")
    args = parser.parse_args(argv)
    print(h.markdown_header(h.environment(args.command)) + "\n")
    text = quality_table()
    print(text)
    if args.timing:
        timings = timing(args.data)
        print("\n" + timings)
        text += "\n\n" + timings
    if args.out is not None:
        h.write_results(args.out, {"table": text}, text, command=args.command)
    return text


if __name__ == "__main__":
    main()
