"""Cell finder benchmark: how often it finds the white cell, how large cells are, what it costs.

On pbc96/train, pbc96/val and the LISC set of another lab (``other_labs/lisc.npz``) the script runs
:func:`bloodcell.cells.find_cells` and reports:

* the share of images where a cell was found (the finder's own flag);
* the nucleus span per class (10th, 50th, 90th percentile, pixels of the 96-px frame), and PBC's
  median over the white-cell classes as a fraction of the frame: the constant
  ``bloodcell.cells.PBC_CELL_FRACTION`` comes from this line;
* the cost per image (finding alone, and :func:`bloodcell.cells.crop_cells`, which finds and crops),
  three timed passes over pbc96/val after a warm-up, median and range;
* galleries of a random sample per set (``gallery_<set>.png``): each image with a circle of the
  measured span around the found centre, and below it the crop :class:`~bloodcell.cells.CellCrop`
  makes. Whether each detection is right is judged by eye on these pictures; the count is
  written into RESULTS.md by hand, with the gallery beside it.

Usage::

    python benchmarks/cells.py                       # writes runs/cells/results.{json,md} and galleries
    python benchmarks/cells.py --sample 48 --seed 1  # another gallery sample
    python benchmarks/cells.py --docs docs/_static   # also the user guide's small galleries

Data: ``--data`` points at a folder holding ``pbc96/train``, ``pbc96/val`` (class folders of 96×96
JPEGs, the PBC dataset of Acevedo et al. 2020, doi:10.17632/snkd93bnjr.1) and
``other_labs/lisc.npz``, by default ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _harness as h

WHITE_CELLS = ("basophil", "eosinophil", "ig", "lymphocyte", "monocyte", "neutrophil")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(
        __file__, __doc__, data="pbc96/train, pbc96/val and other_labs/lisc.npz", out=h.RUNS / "cells"
    )
    p.add_argument("--sample", type=int, default=48, help="images per gallery")
    p.add_argument("--seed", type=int, default=0, help="seed of the gallery samples")
    p.add_argument("--docs", type=Path, default=None, help="also write 24-image galleries at 96 px here")
    return p.parse_args(argv)


def load(data_dir: Path) -> dict:
    train, val = h.load_pbc96(data_dir)
    sets = {"pbc96/train": train, "pbc96/val": val}
    lisc = h.load_lisc(data_dir, required=False)
    if lisc is not None:
        sets["lisc"] = lisc
    return sets


def sizes_by_class(data, cells) -> dict:
    import numpy as np

    out = {}
    for k, name in enumerate(data.class_names):
        chosen = (data.labels == k) & cells.found
        if chosen.any():
            p10, p50, p90 = np.percentile(cells.size[chosen], [10, 50, 90])
            out[name] = {"p10": float(p10), "median": float(p50), "p90": float(p90), "n": int(chosen.sum())}
    return out


def timed(fn, images, passes: int = 3) -> dict:
    fn(images[:64])  # warm-up: TensorFlow traces the ops once
    per_image = [seconds / len(images) * 1000 for seconds in h.repeat(lambda: fn(images), passes)]
    cost = h.summary(per_image)
    return {"median_ms": cost["median"], "min_ms": cost["min"], "max_ms": cost["max"]}


def gallery(data, path: Path, sample: int, seed: int, zoom: int = 2) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from bloodcell.cells import crop_cells

    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data), min(sample, len(data)), replace=False))
    images = data.images[chosen]
    crops, cells = crop_cells(images)
    columns = 12
    tiles = []
    for image, crop, cy, cx, size, found in zip(
        images, crops, cells.centre_y, cells.centre_x, cells.size, cells.found
    ):
        top = Image.fromarray(image).resize((96 * zoom, 96 * zoom), Image.NEAREST)
        draw = ImageDraw.Draw(top)
        r = max(size, 4.0) / 2 * zoom
        y, x = (cy + 0.5) * zoom, (cx + 0.5) * zoom
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 200, 0) if found else (230, 0, 0), width=2)
        bottom = Image.fromarray(crop).resize((96 * zoom, 96 * zoom), Image.NEAREST)
        tiles.append(np.concatenate([np.asarray(top), np.asarray(bottom)], axis=0))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=85)  # JPEG for the docs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import numpy as np

    from bloodcell.cells import crop_cells, find_cells

    sets = load(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"sets": {}}
    for name, data in sets.items():
        cells = find_cells(data)
        entry = {"n": len(data), "found": float(cells.found.mean()), "sizes": sizes_by_class(data, cells)}
        white = np.isin(np.asarray(data.class_names)[data.labels], WHITE_CELLS) & cells.found
        entry["white_cell_median_px"] = float(np.median(cells.size[white]))
        entry["white_cell_median_fraction"] = entry["white_cell_median_px"] / data.image_shape[0]
        gallery(data, args.out / f"gallery_{name.replace('/', '_')}.png", args.sample, args.seed)
        if args.docs is not None and name != "pbc96/train":
            gallery(data, args.docs / f"cell_finder_{name.replace('/', '_')}.jpg", 24, args.seed, zoom=1)
        results["sets"][name] = entry
        print(f"{name}: found {entry['found']:.4f}, white-cell median {entry['white_cell_median_px']:.1f} px")
    val = sets["pbc96/val"].images
    results["cost_per_image"] = {
        "find_cells": timed(lambda x: find_cells(x), val),
        "crop_cells": timed(lambda x: crop_cells(x), val),
    }
    print(json.dumps(results["cost_per_image"]))
    lines = [
        "| set | images | found (%) | white-cell median span (px) | as a fraction of the frame |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in results["sets"].items():
        lines.append(
            f"| {name} | {entry['n']} | {100 * entry['found']:.2f} | {entry['white_cell_median_px']:.1f} | "
            f"{entry['white_cell_median_fraction']:.3f} |"
        )
    lines += ["", "| set | class | p10 | median | p90 |", "|---|---|---:|---:|---:|"]
    for name, entry in results["sets"].items():
        for cls, s in entry["sizes"].items():
            lines.append(f"| {name} | {cls} | {s['p10']:.1f} | {s['median']:.1f} | {s['p90']:.1f} |")
    cost = results["cost_per_image"]
    lines += [
        "",
        "| step | ms per image (median of 3 passes over pbc96/val) | range |",
        "|---|---:|---:|",
        *(f"| {k} | {v['median_ms']:.2f} | {v['min_ms']:.2f}–{v['max_ms']:.2f} |" for k, v in cost.items()),
    ]
    _, md = h.write_results(args.out, results, "\n".join(lines), command=args.command)
    print(md.read_text())


if __name__ == "__main__":
    main()
