"""Benchmark: training a backbone from scratch with Keras's BatchNorm momentum vs bloodcell's 0.9.

Keras applications carry BatchNorm momenta tuned for fine-tuning pretrained weights (MobileNetV3:
0.999). From scratch, the moving statistics then trail the weights for thousands of steps, and the
model evaluated in inference mode predicts one class. ``bloodcell.backbones.create(weights=None)``
sets 0.9 instead. This script trains the same model, seed and data with both and reports validation
accuracy after each epoch; training accuracy is identical in both runs (the momentum only changes
the statistics used at inference).

Usage:
    python benchmarks/from_scratch_batchnorm.py [--data PATH] [--epochs 2] [--image-size 96] [--out DIR]
    python benchmarks/from_scratch_batchnorm.py --sample --epochs 8 --image-size 48   # as the unit test

``--data`` defaults to ``<repo>/../shared/data`` and must hold ``pbc96/train`` and ``pbc96/val`` (the
PBC dataset of Acevedo et al. 2020 at 96x96: https://data.mendeley.com/datasets/snkd93bnjr/1, prepared
as described in that folder's README). ``--sample`` uses the 800 cells bundled with bloodcell instead
(a stratified 640/160 split).
"""

from __future__ import annotations

import argparse
import json
import os

import _harness as h

import bloodcell as bc


def load(args: argparse.Namespace):
    if args.sample:
        data = bc.datasets.load_sample()
        train, val = bc.datasets.split(data, val=0.2, test=0.0, seed=0)
    else:
        train, val = h.load_pbc96(args.data)
    if args.image_size != train.image_shape[0]:
        train = bc.datasets.BloodCellDataset(
            bc.datasets.resize_images(train.images, args.image_size), train.labels
        )
        val = bc.datasets.BloodCellDataset(bc.datasets.resize_images(val.images, args.image_size), val.labels)
    return train, val


def run(train, val, momentum, args: argparse.Namespace) -> dict:
    import keras

    keras.utils.set_random_seed(args.seed)
    model = bc.build_classifier(
        args.backbone,
        head="linear",
        input_shape=(args.image_size, args.image_size, 3),
        weights=None,
        batchnorm_momentum=momentum,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    train_ds = bc.pipeline.to_tf_dataset(train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    val_ds = bc.pipeline.to_tf_dataset(val, batch_size=256)
    with h.Stopwatch() as watch:
        history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0, shuffle=False)
    seconds = watch.wall
    momenta = sorted(
        {
            layer.momentum
            for layer in bc.backbones.backbone_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)
        }
    )
    return {
        "batchnorm_momentum": "keras" if momentum is None else momentum,
        "momenta_in_model": momenta,
        "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
        "train_accuracy": [round(v, 4) for v in history.history["accuracy"]],
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = h.parser(__file__, __doc__)
    parser.add_argument("--sample", action="store_true", help="use the 800 bundled cells instead of --data")
    parser.add_argument("--backbone", default="mobilenetv3small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, val = load(args)
    title = (
        f"{args.backbone} from scratch, {len(train)} train / {len(val)} val images at {args.image_size} px, "
        f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}"
    )
    print(f"{title}; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = [run(train, val, momentum, args) for momentum in (None, "auto")]
    lines = [
        title,
        "",
        "| BatchNorm momentum | val accuracy per epoch | train accuracy per epoch | fit seconds |",
        "|---|---|---|---|",
    ]
    for r in results:
        label = f"{r['batchnorm_momentum']} ({', '.join(f'{m:g}' for m in r['momenta_in_model'])})"
        lines.append(f"| {label} | {r['val_accuracy']} | {r['train_accuracy']} | {r['seconds']} |")
    print("\n".join(lines[2:]))
    arguments = {k: v for k, v in vars(args).items() if k != "command"}
    summary = {"args": arguments, "results": results, "load_average_after": os.getloadavg()[0]}
    print(json.dumps(summary, default=str))
    if args.out is not None:
        h.write_results(args.out, summary, "\n".join(lines), command=args.command)
    return summary


if __name__ == "__main__":
    main()
