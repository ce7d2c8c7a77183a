"""Copies of one cell: how :func:`bloodcell.cells.same_cell_groups` groups the LISC set and pbc96/val.

The LISC set of another lab holds several shifted, padded and recoloured copies of each cell. A
few-shot draw must keep a cell's copies together, or the evaluated part holds cells the model was
fine-tuned on. For each ``--distances`` (bits of 256 between two cells' centred crops) the script
reports, per set: the number of groups (per class too), the images that share a group with another,
and groups whose images carry different labels (a merge of two different cells, since one cell has
one class). It also reports the smallest distance between images of two different classes, and
saves a gallery of the largest LISC groups and of every pbc96/val group, to check by eye.

Usage::

    python benchmarks/same_cell.py
    python benchmarks/same_cell.py --distances 48 64

Data: ``--data`` points at a folder holding ``pbc96/val`` (the PBC dataset of Acevedo et al. 2020,
doi:10.17632/snkd93bnjr.1, at 96×96) and ``other_labs/lisc.npz``, by default ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _harness as h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = h.parser(__file__, __doc__, data="pbc96/val and other_labs/lisc.npz", out=h.RUNS / "same_cell")
    p.add_argument("--distances", type=int, nargs="+", default=[32, 48, 56, 64, 72])
    return p.parse_args(argv)


def grouping(data, distance: int) -> dict:
    import numpy as np

    from bloodcell.cells import same_cell_groups

    started = time.perf_counter()
    groups = same_cell_groups(data, max_distance=distance)
    seconds = time.perf_counter() - started
    sizes = np.bincount(groups)
    mixed = [g for g in np.flatnonzero(sizes > 1) if len(np.unique(data.labels[groups == g])) > 1]
    return {
        "groups": int(len(sizes)),
        "per_class": {
            name: int(len(np.unique(groups[data.labels == c]))) for c, name in enumerate(data.class_names)
        },
        "images_in_shared_groups": int(np.sum(sizes[groups] > 1)),
        "largest_group": int(sizes.max()),
        "mixed_label_groups": len(mixed),
        "seconds": seconds,
        "ids": groups,
    }


def closest_other_class(data) -> int:
    """The smallest hash distance between the centred crops of two images of different classes."""

    from bloodcell.cells import crop_cells
    from bloodcell.cells.groups import _HASH_SIZE
    from bloodcell.outliers.perceptual import hamming_distances, perceptual_hash

    hashes = perceptual_hash(crop_cells(data)[0].images, hash_size=_HASH_SIZE)
    dist = hamming_distances(hashes, hashes)
    return int(dist[data.labels[:, None] != data.labels[None, :]].min())


def gallery(data, groups, path: Path, rows: int = 8, columns: int = 8) -> None:
    """The ``rows`` largest groups of two or more images, one row each (first ``columns`` images)."""
    import numpy as np
    from PIL import Image

    sizes = np.bincount(groups)
    shared = [g for g in np.argsort(-sizes, kind="stable") if sizes[g] > 1][:rows]
    blank = np.zeros_like(data.images[0])
    lines = []
    for g in shared:
        members = list(data.images[groups == g][:columns])
        lines.append(np.concatenate(members + [blank] * (columns - len(members)), axis=1))
    if lines:
        Image.fromarray(np.concatenate(lines, axis=0)).save(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    (val,) = h.load_pbc96(args.data, "val")
    sets = {"lisc": h.load_lisc(args.data), "pbc96/val": val}
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"sets": {}}
    for name, data in sets.items():
        entry: dict = {"n": len(data), "closest_other_class": closest_other_class(data), "distances": {}}
        for distance in args.distances:
            found = grouping(data, distance)
            ids = found.pop("ids")
            entry["distances"][str(distance)] = found
            if distance == max(args.distances):
                gallery(data, ids, args.out / f"groups_{name.replace('/', '_')}.png")
            print(f"{name} {distance}: {found}", flush=True)
        results["sets"][name] = entry
    lines = []
    for name, entry in results["sets"].items():
        classes = list(next(iter(entry["distances"].values()))["per_class"])
        lines += [
            "",
            f"{name}: {entry['n']} images; closest images of two different classes: "
            f"{entry['closest_other_class']} bits apart.",
            "",
            "| max distance (bits) | groups | " + " | ".join(classes) + " | images sharing a group | "
            "largest | mixed-label groups | seconds |",
            "|" + "---:|" * (len(classes) + 6),
        ]
        for distance, d in entry["distances"].items():
            lines.append(
                f"| {distance} | {d['groups']} | " + " | ".join(str(d["per_class"][c]) for c in classes)
                + f" | {d['images_in_shared_groups']} | {d['largest_group']} | {d['mixed_label_groups']} | "
                f"{d['seconds']:.1f} |"
            )  # fmt: skip
    _, md = h.write_results(args.out, results, "\n".join(lines).strip(), command=args.command)
    print(md.read_text())


if __name__ == "__main__":
    main()
