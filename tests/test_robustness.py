"""Tests of bloodcell.robustness: the corruption suite on real cells, and the robustness report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bloodcell as bc
from bloodcell.errors import (
    ConfigurationError,
    InvalidDataError,
    InvalidDtypeError,
    UnknownNameError,
)
from bloodcell.robustness import (
    CORRUPTIONS,
    GROUPS,
    SEVERITIES,
    RobustnessReport,
    corrupt,
    corrupt_dataset,
    evaluate_robustness,
    list_corruptions,
)

ALL_KINDS = list_corruptions()


@pytest.fixture(scope="module")
def cells(sample) -> np.ndarray:
    """12 real cells from across the classes."""
    return np.ascontiguousarray(sample.images[::67][:12])


@pytest.fixture(scope="module")
def corrupted(cells) -> dict[str, list[np.ndarray]]:
    """Every kind at every severity, seed 0: computed once for the tests below."""
    return {kind: [corrupt(cells, kind, s, seed=0) for s in SEVERITIES] for kind in ALL_KINDS}


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
def test_suite_covers_the_groups_with_five_documented_severities():
    assert set(ALL_KINDS) == set(CORRUPTIONS)
    assert sum(len(list_corruptions(g)) for g in GROUPS) == len(ALL_KINDS)
    for needed in ("hed_shift", "hue_shift", "saturation_up", "saturation_down", "brightness_up",
                   "brightness_down", "contrast", "gamma", "defocus_blur", "motion_blur", "gaussian_noise",
                   "shot_noise", "jpeg", "pixelate", "stain_deposits", "bubbles", "uneven_illumination",
                   "zoom_in", "zoom_out"):  # fmt: skip
        assert needed in CORRUPTIONS
    for c in CORRUPTIONS.values():
        assert len(c.values) == 5 and c.parameter and c.description
        assert c.value(1) == c.values[0] and c.value(5) == c.values[4]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_severity_keeps_shape_and_dtype_changes_the_image_and_repeats(kind, cells, corrupted):
    for severity, out in zip(SEVERITIES, corrupted[kind]):
        assert out.dtype == np.uint8 and out.shape == cells.shape
        changed = np.abs(out.astype(int) - cells).max(axis=(1, 2, 3)) > 0
        assert changed.all(), f"{kind} s{severity} left {int((~changed).sum())} images unchanged"
        if severity in (1, 5):
            np.testing.assert_array_equal(corrupt(cells, kind, severity, seed=0), out)


def _mae(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out.astype(np.float64) - ref).mean())


def _laplacian_variance(x: np.ndarray) -> float:
    from scipy import ndimage

    grey = x.astype(np.float64) @ [0.299, 0.587, 0.114]
    return float(np.mean([ndimage.laplace(g).var() for g in grey]))


def _chroma(x: np.ndarray) -> float:
    return float((x.max(axis=-1).astype(np.float64) - x.min(axis=-1)).mean())


def _luma_std(x: np.ndarray) -> float:
    return float((x.astype(np.float64) @ [0.299, 0.587, 0.114]).std(axis=(1, 2)).mean())


def _psnr(out: np.ndarray, ref: np.ndarray) -> float:
    mse = np.mean((out.astype(np.float64) - ref) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _dark_specks(out: np.ndarray, ref: np.ndarray) -> int:
    return int(((ref.astype(int) - out).mean(axis=-1) > 40).sum())


# A measure per kind, and whether it rises (+1) or falls (-1) as the severity grows.
MEASURES = {
    "brightness_up": (lambda out, ref: float(out.mean()), +1),
    "brightness_down": (lambda out, ref: float(out.mean()), -1),
    "saturation_up": (lambda out, ref: _chroma(out), +1),
    "saturation_down": (lambda out, ref: _chroma(out), -1),
    "contrast": (lambda out, ref: _luma_std(out), -1),
    "defocus_blur": (lambda out, ref: _laplacian_variance(out), -1),
    "motion_blur": (lambda out, ref: _laplacian_variance(out), -1),
    "jpeg": (_psnr, -1),
    "gaussian_noise": (lambda out, ref: float((out.astype(float) - ref).std()), +1),
    "shot_noise": (lambda out, ref: float((out.astype(float) - ref).std()), +1),
    "stain_deposits": (_dark_specks, +1),
}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_higher_severity_is_worse(kind, cells, corrupted):
    measure, direction = MEASURES.get(kind, (_mae, +1))  # default: further from the clean image
    values = np.array([measure(out, cells) for out in corrupted[kind]])
    steps = np.diff(values) * direction
    assert (steps > 0).all(), f"{kind}: {values}"


def test_seeds_differ_for_random_kinds_but_not_for_fixed_ones(cells):
    for kind in ("hed_shift", "gaussian_noise", "stain_deposits", "bubbles", "motion_blur"):
        assert not np.array_equal(corrupt(cells, kind, 3, seed=0), corrupt(cells, kind, 3, seed=1)), kind
    for kind in ("jpeg", "defocus_blur", "zoom_in"):
        np.testing.assert_array_equal(corrupt(cells, kind, 3, seed=0), corrupt(cells, kind, 3, seed=1))


def test_result_does_not_depend_on_batching(sample):
    images = sample.images[:150]  # more than one internal chunk of 128
    whole = corrupt(images, "stain_deposits", 4, seed=7)
    np.testing.assert_array_equal(corrupt(images[:130], "stain_deposits", 4, seed=7), whole[:130])


def test_other_image_sizes_work(cells):
    small = np.ascontiguousarray(cells[:, ::2, ::2])  # 48 px
    for kind in ALL_KINDS:
        out = corrupt(small, kind, 3)
        assert out.shape == small.shape and not np.array_equal(out, small), kind


def test_corrupt_dataset_keeps_labels_and_leaves_the_original(small_sample):
    before = small_sample.images.copy()
    out = corrupt_dataset(small_sample, "hue_shift", 4, seed=2)
    assert isinstance(out, bc.datasets.BloodCellDataset) and out is not small_sample
    np.testing.assert_array_equal(out.labels, small_sample.labels)
    assert out.class_names == small_sample.class_names
    np.testing.assert_array_equal(out.images, corrupt(small_sample.images, "hue_shift", 4, seed=2))
    np.testing.assert_array_equal(small_sample.images, before)


def test_bad_input_gives_clear_errors(cells):
    with pytest.raises(UnknownNameError, match="'jpeg'"):
        corrupt(cells, "jpg", 1)
    with pytest.raises(UnknownNameError, match="defocus_blur"):
        corrupt(cells, "defocus", 1)
    for severity in (0, 6, 2.5, True, "3"):
        with pytest.raises(ConfigurationError, match="1 \\(mild\\) to 5"):
            corrupt(cells, "jpeg", severity)
    with pytest.raises(InvalidDtypeError, match="uint8"):
        corrupt(cells.astype(np.float32), "jpeg", 1)
    with pytest.raises(InvalidDataError, match="images\\[None\\]"):
        corrupt(cells[0], "jpeg", 1)
    with pytest.raises(ConfigurationError, match="Received: seed=0.5"):  # one rule for seeds everywhere
        corrupt(cells, "jpeg", 1, seed=0.5)
    with pytest.raises(ConfigurationError, match="groups"):
        list_corruptions("colour")
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        corrupt_dataset(cells, "jpeg", 1)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(sample):
    """A small CNN fitted briefly on the real sample, so its predictions vary with the images."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),
            keras.layers.Conv2D(16, 5, strides=4, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="softmax"),
        ],
        name="tiny",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(
        sample.images.astype("float32"), sample.labels, epochs=6, batch_size=32, verbose=0
    )  # ≈ 65 % train accuracy
    return model


@pytest.fixture(scope="module")
def robustness_run(tiny_model, small_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("robustness")
    report = evaluate_robustness(
        tiny_model,
        small_sample,
        kinds=["defocus_blur", "brightness_down", "stain_deposits"],
        severities=(1, 3, 5),
        batch_size=8,
        seed=3,
        output_dir=out,
        verbose=False,
    )
    return report, out


def test_evaluate_robustness_table_matches_bc_evaluate(robustness_run, tiny_model, small_sample):
    report, _ = robustness_run
    assert report.kinds == ("defocus_blur", "brightness_down", "stain_deposits")
    assert report.severities == (1, 3, 5)
    assert report.accuracy.shape == report.f1_macro.shape == (3, 3)
    assert report.n == len(small_sample) and report.model == "tiny"
    assert report.clean_accuracy == bc.evaluate(tiny_model, small_sample).accuracy
    cell = bc.evaluate(tiny_model, corrupt_dataset(small_sample, "brightness_down", 5, seed=3))
    assert report.accuracy[1, 2] == cell.accuracy and report.f1_macro[1, 2] == cell.f1_macro
    assert report.mean_corrupted_accuracy == pytest.approx(report.accuracy.mean())
    assert len(np.unique(report.accuracy)) > 1  # the fitted model reacts to the corruptions
    if report.clean_accuracy > 0:
        assert report.ratio == pytest.approx(report.accuracy.mean() / report.clean_accuracy)
        assert report.kind_ratio["defocus_blur"] == pytest.approx(
            report.accuracy[0].mean() / report.clean_accuracy
        )


def test_report_files_round_trip(robustness_run, tmp_path):
    report, out = robustness_run
    assert {p.name for p in out.iterdir()} == {
        "robustness.json",
        "robustness.csv",
        "robustness.md",
        "robustness.png",
    }
    again = RobustnessReport.from_json(out / "robustness.json")
    assert again.to_dict() == report.to_dict()
    assert RobustnessReport.from_json(report.to_json()).to_dict() == report.to_dict()
    rows = (out / "robustness.csv").read_text().splitlines()
    assert rows[0] == "kind,group,severity,accuracy,f1_macro"
    assert rows[1].startswith("clean,,0,") and len(rows) == 2 + 3 * 3
    assert rows[2].startswith("defocus_blur,optics,1,")
    md = report.to_markdown()
    assert "| Corruption | s1 | s3 | s5 | Mean | Ratio |" in md and "| brightness_down |" in md
    assert (out / "robustness.md").read_text().strip() == md
    text = str(report)
    assert "clean accuracy" in text and "stain_deposits" in text
    with pytest.raises(InvalidDataError, match="RobustnessReport"):
        RobustnessReport.from_json('{"kinds": ["jpeg"]}')


def test_plot_is_a_real_png(robustness_run, tmp_path):
    from PIL import Image

    report, out = robustness_run
    path = report.plot(tmp_path / "heat.png")
    for png in (path, out / "robustness.png"):
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 150
            pixels = np.asarray(img.convert("RGB"))
        assert pixels.std() > 10  # drawn, not blank


def test_progress_is_printed_per_kind(tiny_model, small_sample, capsys):
    evaluate_robustness(
        tiny_model, small_sample[:8], kinds=["jpeg", "zoom_out"], severities=[2, 4], verbose=True
    )
    err = capsys.readouterr().err
    assert "clean: accuracy" in err and "[1/2] jpeg" in err and "[2/2] zoom_out" in err


def test_model_and_data_from_files(tiny_model, small_sample, tmp_path):
    model_path = tmp_path / "tiny.keras"
    tiny_model.save(model_path)
    data_path = small_sample.save_npz(tmp_path / "cells.npz")
    report = evaluate_robustness(str(model_path), data_path, kinds=["gamma"], severities=[2], verbose=False)
    assert report.model == "tiny.keras" and report.n == len(small_sample)
    assert report.clean_accuracy == bc.evaluate(tiny_model, small_sample).accuracy


def test_evaluate_robustness_rejects_bad_arguments(tiny_model, small_sample):
    with pytest.raises(UnknownNameError, match="Did you mean"):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg", "blurr"], verbose=False)
    with pytest.raises(ConfigurationError, match="severit"):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg"], severities=(0, 1), verbose=False)
    with pytest.raises(ConfigurationError, match="distinct"):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg"], severities=(1, 1), verbose=False)
    with pytest.raises(ConfigurationError, match="repeated"):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg", "jpeg"], verbose=False)
    with pytest.raises(ConfigurationError, match="batch_size"):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg"], batch_size=0, verbose=False)
    with pytest.raises(InvalidDtypeError, match="keras.Model"):
        evaluate_robustness(object(), small_sample, kinds=["jpeg"], verbose=False)
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        evaluate_robustness(tiny_model, small_sample.images, kinds=["jpeg"], verbose=False)
    with pytest.raises(InvalidDataError, match="shape"):
        RobustnessReport(("jpeg",), (1, 2), 4, 0.5, 0.5, np.zeros((1, 3)), np.zeros((1, 2)))


def test_tta_is_passed_through(tiny_model, small_sample):
    from bloodcell import tta

    report = evaluate_robustness(
        tiny_model, small_sample, kinds=["jpeg"], severities=[3], tta="flips", verbose=False
    )
    expected = bc.metrics.Report.from_predictions(
        small_sample.labels, tta.predict(tiny_model, small_sample, "flips")
    )
    assert report.tta == "flips" and report.clean_accuracy == expected.accuracy
    jpeg = corrupt_dataset(small_sample, "jpeg", 3)
    expected = bc.metrics.Report.from_predictions(jpeg.labels, tta.predict(tiny_model, jpeg, "flips"))
    assert report.accuracy[0, 0] == expected.accuracy
    with pytest.raises(ConfigurationError):
        evaluate_robustness(tiny_model, small_sample, kinds=["jpeg"], tta="mirror-everything", verbose=False)


def test_json_is_plain(robustness_run):
    report, out = robustness_run
    data = json.loads((out / "robustness.json").read_text())
    assert data["kinds"] == list(report.kinds) and data["ratio"] == pytest.approx(report.ratio)


def test_guide_lists_every_kind_with_its_parameters():
    from pathlib import Path

    guide = Path(__file__).resolve().parents[1] / "docs" / "guide" / "robustness.rst"
    lines = guide.read_text(encoding="utf-8").splitlines()
    for kind, spec in CORRUPTIONS.items():
        row = lines.index(f"   * - ``{kind}``")
        assert lines[row + 1].strip() == f"- {spec.group}"
        assert lines[row + 2].strip() == f"- {spec.parameter}"
        assert lines[row + 3].strip() == "- " + ", ".join(f"{v:g}" for v in spec.values)


def test_comma_strings_still_work_but_are_deprecated(tiny_model, small_sample):
    with pytest.warns(DeprecationWarning, match="comma-separated"):
        old = evaluate_robustness(
            tiny_model, small_sample[:8], kinds="jpeg,gamma", severities=[2], verbose=False
        )
    with pytest.warns(DeprecationWarning, match="severities"):
        evaluate_robustness(tiny_model, small_sample[:8], kinds="jpeg", severities="2,4", verbose=False)
    new = evaluate_robustness(
        tiny_model, small_sample[:8], kinds=["jpeg", "gamma"], severities=[2], verbose=False
    )
    assert {**old.to_dict(), "seconds": 0} == {**new.to_dict(), "seconds": 0}
