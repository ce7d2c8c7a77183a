"""Outlier detection on an AN2DL-style contaminated set built from the real pbc96 training images.

The set: the 11,919 real pbc96/train cells, plus 1,600 copies of one non-blood image (the
scikit-image logo, a cartoon-like graphic) and 200 copies of another (the astronaut photograph),
spread evenly over the classes as in the AN2DL 2024 set; unique non-blood images (random crops and
resizes of scikit-image's bundled sample images, and generated noise / stripes / gradients); blank
images; dark and blurred versions of real cells (taken from pbc96/val, so their originals are not in
the set); exact copies of real cells (half under another label) and near copies (JPEG re-encoding,
brightness ±8, 1-pixel shift).

It reports recall per planted kind, precision per reason, real cells flagged, and time, for the
default detectors, for EmbeddingOutliers on two feature sources (a randomly initialised
MobileNetV3Small, and a small CNN trained here from scratch for a few epochs on the real train
images: ImageNet weights cannot be downloaded offline), and for cleanvision on the same set.

Usage:
    python benchmarks/outliers.py [--data ../shared/data] [--embeddings random,trained] [--cleanvision]
                                  [--out runs/outliers]

The data: the PBC dataset (Acevedo et al. 2020, CC BY 4.0, https://data.mendeley.com/datasets/snkd93bnjr/1),
prepared as 96-px class folders (see shared/data/README.md); pass its parent folder with --data.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
import time

import _harness as h
import numpy as np

import bloodcell as bc

NON_BLOOD_SOURCES = (
    "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "moon",
    "page", "text", "horse", "clock", "coins", "grass", "gravel", "retina", "cell", "brick",
    "colorwheel", "cat", "microaneurysms",
)  # fmt: skip


def to_rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.shape[-1] == 4:  # composite transparency on white
        alpha = a[..., 3:4] / 255.0
        a = a[..., :3] * alpha + 255 * (1 - alpha)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (a - a.min()) / (np.ptp(a) + 1e-9) * 255
    return a.astype(np.uint8)


def resize(a: np.ndarray, size: int = 96) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BICUBIC))


def random_crop(a: np.ndarray, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    h, w = a.shape[:2]
    side = max(8, int(rng.uniform(0.25, 1.0) * min(h, w)))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return resize(a[y : y + side, x : x + side], size)


def generated_non_cells(n: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Noise, stripes and gradients in random colours (not cells, not blank)."""
    out = np.empty((n, size, size, 3), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        kind = i % 3
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if kind == 0:
            img = rng.integers(0, 256, (size, size, 3))
        elif kind == 1:
            t = (np.sin(2 * np.pi * rng.uniform(2, 10) * (xx * np.cos(rng.uniform(0, 3)) + yy)) > 0)[
                ..., None
            ]
            img = np.where(t, c1, c2)
        else:
            t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
            t = (t - t.min()) / (np.ptp(t) + 1e-9)
            img = c1 * t + c2 * (1 - t)
        out[i] = np.clip(img, 0, 255)
    return out


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(float(sigma))))


def build_set(train: bc.datasets.BloodCellDataset, val: bc.datasets.BloodCellDataset, seed: int = 0):
    """The contaminated dataset and a kind per image."""
    import skimage.data as skd

    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, np.ndarray, str]] = []
    per_class = lambda n: np.repeat(np.arange(8), n // 8)  # noqa: E731 - spread evenly over classes
    logo = resize(to_rgb(skd.logo()))
    astronaut = resize(to_rgb(skd.astronaut()))
    parts.append((np.repeat(logo[None], 1600, 0), per_class(1600), "copies_1600"))
    parts.append((np.repeat(astronaut[None], 200, 0), per_class(200), "copies_200"))
    sources = [to_rgb(getattr(skd, name)()) for name in NON_BLOOD_SOURCES]
    crops = np.stack([random_crop(src, rng) for src in sources for _ in range(20)])
    parts.append((crops, rng.integers(0, 8, len(crops)), "unique_non_blood"))
    gen = generated_non_cells(60, rng)
    parts.append((gen, rng.integers(0, 8, len(gen)), "generated_non_blood"))
    colours = rng.integers(0, 256, (100, 1, 1, 3))
    blanks = np.broadcast_to(colours, (100, 96, 96, 3)).astype(np.int16)
    blanks = blanks + (rng.normal(0, 1.5, blanks.shape) * (np.arange(100) % 2 == 0)[:, None, None, None])
    parts.append((np.clip(blanks, 0, 255).astype(np.uint8), rng.integers(0, 8, 100), "blank"))
    pick = rng.choice(len(val), 200, replace=False)
    dark = (val.images[pick[:100]] * rng.uniform(0.1, 0.45, (100, 1, 1, 1))).astype(np.uint8)
    parts.append((dark, val.labels[pick[:100]], "dark"))
    sigmas = rng.uniform(1.5, 3.0, 100)
    blurred = np.stack([blur(img, s) for img, s in zip(val.images[pick[100:]], sigmas, strict=True)])
    parts.append((blurred, val.labels[pick[100:]], "blurred"))
    src = rng.choice(len(train), 200, replace=False)
    exact_labels = train.labels[src[:100]].copy()
    exact_labels[50:] = (exact_labels[50:] + rng.integers(1, 8, 50)) % 8  # half under another label
    parts.append((train.images[src[:100]].copy(), exact_labels, "exact_duplicate"))
    near = []
    for i in src[100:]:
        img = np.clip(train.images[i].astype(np.int16) + rng.integers(-8, 9), 0, 255).astype(np.uint8)
        img = np.roll(img, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2)))
        near.append(jpeg(img, int(rng.integers(60, 91))))
    parts.append((np.stack(near), train.labels[src[100:]], "near_duplicate"))

    images = np.concatenate([train.images] + [p[0] for p in parts])
    labels = np.concatenate([train.labels] + [p[1] for p in parts])
    kinds = np.concatenate(
        [np.full(len(train), "real", "<U20")] + [np.full(len(p[0]), p[2], "<U20") for p in parts]
    )
    # Real PBC images that are byte-identical to an earlier real image are true duplicates.
    real_groups = bc.datasets.identical_groups(train.images)
    _, first = np.unique(real_groups, return_index=True)
    is_later_copy = np.ones(len(train), bool)
    is_later_copy[first] = False
    kinds[: len(train)][is_later_copy] = "real_duplicate"
    # Originals of the copies planted under another label: their label is genuinely in doubt now.
    kinds[src[50:100]] = "real_conflict_original"
    return bc.datasets.BloodCellDataset(images, labels), kinds


def evaluate(flags: np.ndarray, reasons: list[tuple[str, ...]], kinds: np.ndarray) -> dict:
    rows = {}
    for kind in dict.fromkeys(kinds.tolist()):
        mask = kinds == kind
        caught = flags[mask]
        by_reason: dict[str, int] = {}
        for i in np.flatnonzero(mask & flags):
            for r in reasons[i]:
                by_reason[r] = by_reason.get(r, 0) + 1
        rows[kind] = dict(
            n=int(mask.sum()), flagged=int(caught.sum()), rate=float(caught.mean()), by_reason=by_reason
        )
    reason_rows = {}
    for r in sorted({r for rs in reasons for r in rs}):
        idx = np.array([r in rs for rs in reasons])
        reason_rows[r] = dict(n=int(idx.sum()), real=int((idx & (kinds == "real")).sum()))
    contaminant = kinds != "real"
    tp = int((flags & contaminant).sum())
    return dict(
        kinds=rows,
        reasons=reason_rows,
        precision=tp / max(int(flags.sum()), 1),
        recall=tp / max(int(contaminant.sum()), 1),
    )


def print_eval(title: str, ev: dict, seconds: float, record: dict | None = None) -> None:
    """Print an evaluation; with ``record``, also keep it there under ``title``."""
    if record is not None:
        record[title] = {**ev, "seconds": seconds}
    print(f"\n## {title}  ({seconds:.1f} s)")
    print(f"{'kind':<22}{'n':>6}{'flagged':>9}{'rate':>9}   reasons")
    for kind, row in ev["kinds"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["by_reason"].items(), key=lambda kv: -kv[1]))
        print(f"{kind:<22}{row['n']:>6}{row['flagged']:>9}{row['rate']:>9.1%}   {reasons}")
    print("per reason (flagged, of which real cells, precision):")
    for r, row in ev["reasons"].items():
        print(f"  {r:<20}{row['n']:>6}{row['real']:>6}{1 - row['real'] / max(row['n'], 1):>9.1%}")
    print(f"overall: precision {ev['precision']:.1%}, recall {ev['recall']:.1%}")


def small_cnn(num_classes: int = 8):
    import keras

    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (32, 64, 128, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(inputs, outputs), keras.Model(inputs, features)


def extractors(which: list[str], train: bc.datasets.BloodCellDataset, epochs: int, seed: int):
    import keras

    out = {}
    if "random" in which:
        keras.utils.set_random_seed(seed)
        out["random-init MobileNetV3Small"] = (
            keras.applications.MobileNetV3Small(
                input_shape=(96, 96, 3),
                include_top=False,
                weights=None,
                pooling="avg",
                include_preprocessing=True,
            ),
            0.0,
        )
    if "trained" in which:
        keras.utils.set_random_seed(seed)
        model, features = small_cnn()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        ds = bc.pipeline.to_tf_dataset(train, batch_size=64, shuffle=True, seed=seed)
        start = time.perf_counter()
        hist = model.fit(ds, epochs=epochs, verbose=0)
        took = time.perf_counter() - start
        acc = hist.history["accuracy"][-1]
        print(
            f"small CNN trained from scratch on {len(train)} real cells: {epochs} epochs, {took:.0f} s, "
            f"final train accuracy {acc:.3f}"
        )
        out[f"small CNN trained {epochs} epochs (train acc {acc:.2f})"] = (features, took)
    return out


def run_cleanvision(data: bc.datasets.BloodCellDataset, kinds: np.ndarray, record: dict) -> None:
    try:
        import cleanvision
        from cleanvision import Imagelab
    except ImportError:
        print("\ncleanvision is not installed (pip install cleanvision); skipped.")
        return
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        start = time.perf_counter()
        for i, img in enumerate(data.images):
            p = os.path.join(tmp, f"{i:05d}.png")
            Image.fromarray(img).save(p, compress_level=1)
            paths.append(p)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        lab = Imagelab(filepaths=paths)
        lab.find_issues(n_jobs=2, verbose=False)
        took = time.perf_counter() - start
    issues = lab.issues
    cols = [c for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]
    flags = np.zeros(len(data), bool)
    reasons: list[tuple[str, ...]] = [()] * len(data)
    frame = issues.loc[paths, cols].to_numpy(bool)
    # cleanvision flags every member of a duplicate set; keep the first, as our reports do, for a fair count.
    for set_col in ("exact_duplicates", "near_duplicates"):
        for dup_set in lab.info.get(set_col, {}).get("sets", []):
            members = sorted(paths.index(p) for p in dup_set)
            col = cols.index(f"is_{set_col}_issue")
            frame[members[0], col] = False
    flags = frame.any(axis=1)
    names = [c[3:-6] for c in cols]
    for i in np.flatnonzero(flags):
        reasons[i] = tuple(n for n, f in zip(names, frame[i]) if f)
    print(
        f"\ncleanvision {cleanvision.__version__}: find_issues {took:.1f} s "
        f"(writing the PNG files took {write_s:.1f} s more)"
    )
    print_eval(
        f"cleanvision {cleanvision.__version__} (default issue types, first of each duplicate set kept)",
        evaluate(flags, reasons, kinds),
        took,
        record,
    )


def hash_speed(images: np.ndarray) -> dict:
    """bloodcell's batched pHash against imagehash's per-image pHash, same hash size (256 bits)."""
    with h.Stopwatch() as watch:
        ours = bc.outliers.perceptual_hash(images, "phash", hash_size=16)
    ours_s = watch.wall
    result = {"images": len(images), "bloodcell_seconds": ours_s}
    print(
        f"bloodcell perceptual_hash(phash, 16): {len(images)} images in {ours_s:.2f} s "
        f"({len(images) / ours_s:,.0f} img/s)"
    )
    try:
        import imagehash
        from PIL import Image
    except ImportError:
        print("imagehash is not installed (pip install imagehash); comparison skipped.")
        return result
    with h.Stopwatch() as watch:
        theirs = [imagehash.phash(Image.fromarray(img), hash_size=16) for img in images]
    theirs_s = watch.wall
    print(
        f"imagehash {imagehash.__version__} phash(hash_size=16): {theirs_s:.2f} s "
        f"({len(images) / theirs_s:,.0f} img/s); bloodcell is {theirs_s / ours_s:.0f}x faster"
    )
    # The recipes differ in the resize (PIL's ANTIALIAS to 64 px against exact area averaging), so
    # hashes are close, not identical: report the typical disagreement in bits.
    theirs_bits = np.stack([np.packbits(one.hash.reshape(-1)) for one in theirs])
    diff = bc.outliers.hamming_distances(ours[:500], theirs_bits[:500]).diagonal()
    print(f"bits differing between the two on the first 500 images: median {np.median(diff):.0f} of 256")
    result.update(imagehash_seconds=theirs_s, median_bits_differing=float(np.median(diff)))
    return result


def evaluations_markdown(record: dict) -> str:
    lines = ["| detectors | seconds | precision (%) | recall (%) |", "|---|---:|---:|---:|"]
    for title, ev in record.items():
        lines.append(
            f"| {title} | {ev['seconds']:.1f} | {100 * ev['precision']:.1f} | {100 * ev['recall']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = h.parser(__file__, __doc__, data="pbc96/train and pbc96/val", full_doc=True)
    parser.add_argument(
        "--embeddings", default="random,trained", help="comma list of random,trained, or none"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs for the from-scratch CNN")
    parser.add_argument("--cleanvision", action="store_true", help="also run cleanvision on the same set")
    parser.add_argument("--gallery", default=None, help="write the report's PNG gallery here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hash-speed", action="store_true", help="only compare pHash speed with imagehash")
    args = parser.parse_args(argv)

    h.require(args.data, "pbc96/train", "pbc96/val")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load: {os.getloadavg()}"
    )
    start = time.perf_counter()
    train, val = h.load_pbc96(args.data)
    if args.hash_speed:
        result = hash_speed(np.ascontiguousarray(train.images))
        if args.out is not None:
            h.write_results(args.out, {"hash_speed": result}, command=args.command)
        return result
    data, kinds = build_set(train, val, seed=args.seed)
    print(f"built the set in {time.perf_counter() - start:.1f} s: {len(data)} images")
    for kind, n in zip(*np.unique(kinds, return_counts=True)):
        print(f"  {kind:<22}{n:>6}")

    record: dict = {}
    with h.Stopwatch() as watch:
        report = bc.outliers.find_outliers(data)
    print("\n" + report.summary())
    print_eval(
        "bloodcell default detectors (exact + near duplicates, image quality, stain profile)",
        evaluate(report.flags, report.reasons, kinds),
        watch.wall,
        record,
    )
    for name, det in report.detections.items():
        ev = evaluate(det.flags, det.reasons, kinds)
        caught = {k: f"{v['flagged']}/{v['n']}" for k, v in ev["kinds"].items() if v["flagged"]}
        print(f"  {name:<18} alone: {report.timings[name]:.1f} s, flags {caught}")
    if args.gallery:
        print("gallery:", report.plot(args.gallery))

    which = [w for w in args.embeddings.split(",") if w and w != "none"]
    for label, (extractor, _train_s) in extractors(which, train, args.epochs, args.seed).items():
        for method in ("isolation_forest", "lof"):
            det = bc.outliers.EmbeddingOutliers(extractor=extractor, method=method)
            with h.Stopwatch() as watch:
                emb = bc.outliers.find_outliers(data, [det])
            print_eval(
                f"EmbeddingOutliers({method}) on {label} features, alone",
                evaluate(emb.flags, emb.reasons, kinds),
                watch.wall,
                record,
            )
            both = emb.flags | report.flags
            merged = [a + b for a, b in zip(report.reasons, emb.reasons)]
            print_eval(
                f"default detectors + EmbeddingOutliers({method}) on {label}",
                evaluate(both, merged, kinds),
                watch.wall + sum(report.timings.values()),
                record,
            )

    if args.cleanvision:
        run_cleanvision(data, kinds, record)
    print(f"\nload after: {os.getloadavg()}")
    kinds_count = {k: int(n) for k, n in zip(*np.unique(kinds, return_counts=True))}
    results = {"images": len(data), "planted": kinds_count, "evaluations": record}
    if args.out is not None:
        h.write_results(args.out, results, evaluations_markdown(record), command=args.command)
    return results


if __name__ == "__main__":
    main()
