"""find_outliers and OutlierReport on the real bundled sample with planted contaminants."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import bloodcell as bc
from bloodcell.errors import ConfigurationError, EmptyDatasetError, InvalidDataError, InvalidDtypeError
from bloodcell.outliers import ImageQuality, NearDuplicates, find_outliers


@pytest.fixture(scope="module")
def report(planted):
    data, _ = planted
    return find_outliers(data)


def test_real_sample_is_clean(sample):
    rep = find_outliers(sample)
    assert rep.indices.tolist() == []
    assert len(rep.clean(sample)) == len(sample)


def test_every_planted_kind_is_caught_and_real_cells_are_not(planted, report):
    data, kinds = planted
    flags = report.flags
    for kind, idx in kinds.items():
        if kind == "real":
            continue
        assert flags[idx].all(), f"{kind}: missed {idx[~flags[idx]].tolist()}"
    # Real cells: only the originals whose copy carries another label (cell 2) are flagged.
    assert np.flatnonzero(flags[kinds["real"]]).tolist() == [2]


def test_reasons_name_the_right_problem(planted, report):
    data, kinds = planted
    reasons = report.reasons
    assert all("duplicate" in reasons[i] and "label_conflict" in reasons[i] for i in kinds["copies"][1:])
    assert all("low_information" in reasons[i] for i in kinds["blank"])
    assert all("dark" in reasons[i] for i in kinds["dark"])
    assert all("blurry" in reasons[i] for i in kinds["blurred"])
    assert all("near_duplicate" in reasons[i] for i in kinds["near_copy"])
    assert reasons[kinds["exact_copy"][0]] == ("duplicate", "near_duplicate")
    assert "label_conflict" in reasons[2] and "label_conflict" in reasons[kinds["exact_copy"][2]]
    greys = kinds["non_blood"][8:12]
    assert all("grayscale" in reasons[i] for i in greys)
    colour_photos = kinds["non_blood"][:8]
    assert sum("not_blood_smear" in reasons[i] for i in colour_photos) >= 6


def test_clean_keeps_one_copy_unless_labels_disagree(sample, planted, report):
    data, kinds = planted
    clean = report.clean(data)
    assert len(clean) == len(data) - len(report.indices)
    kept = bc.datasets.image_digests(clean.images)
    digests = bc.datasets.image_digests(data.images)
    # Real cells 0 and 1 had one same-label copy each: exactly one image of each pair is left.
    for i in (0, 1):
        assert (kept == digests[i]).sum() == 1
    # Cell 2's copy carries another label: the whole group goes.
    assert (kept == digests[2]).sum() == 0
    # The 40 cartoon copies carry 8 labels: none is left.
    assert (kept == digests[kinds["copies"][0]]).sum() == 0
    assert np.array_equal(data.drop(report.indices).labels, clean.labels)


def test_duplicate_groups_and_counts(planted, report):
    data, kinds = planted
    exact = [g for g in report.duplicate_groups if g.kind == "exact"]
    sizes = sorted(len(g) for g in exact)
    assert sizes == [2, 2, 2, 40]
    cartoon = next(g for g in exact if len(g) == 40)
    assert cartoon.label_conflict and cartoon.indices[0] == kinds["copies"][0]
    counts = report.counts()
    assert counts["duplicate"] == 39 + 3
    assert set(kinds["blank"]) <= set(report.by_reason()["low_information"].tolist())
    assert counts["low_information"] == len(report.by_reason()["low_information"])
    assert sum(counts.values()) >= len(report.indices)
    assert "flagged" in report.summary() and "exact" in report.summary()


def test_to_csv_is_complete_and_atomic(planted, report, tmp_path):
    data, kinds = planted
    path = report.to_csv(tmp_path / "outliers.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data)
    assert {"score_stain_profile", "score_image_quality", "exact_group", "near_group"} <= set(rows[0])
    blank = rows[int(kinds["blank"][0])]
    assert blank["flagged"] == "1" and "low_information" in blank["reasons"].split(";")
    assert rows[int(kinds["exact_copy"][0])]["exact_group"] == "0"
    assert rows[5]["flagged"] == "0" and rows[5]["reasons"] == ""
    assert [p.name for p in tmp_path.iterdir()] == ["outliers.csv"]  # no temporary file left


def test_plot_writes_a_gallery_png(report, tmp_path):
    path = report.plot(tmp_path / "gallery.png", per_reason=4)
    img = Image.open(path)
    assert img.format == "PNG"
    rows = len(report.by_reason())
    assert img.size[1] > 150 * rows  # one row of thumbnails per reason


def test_bad_input_gets_one_clear_error(sample):
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        find_outliers(sample.images)
    with pytest.raises(ConfigurationError, match="OutlierDetector"):
        find_outliers(sample, ["image_quality"])
    with pytest.raises(InvalidDataError, match="not it"):
        find_outliers(sample[:50]).clean(sample[50:100])
    with pytest.raises(EmptyDatasetError):
        find_outliers(sample[:0])


def test_detectors_by_name_in_a_dict(sample):
    rep = find_outliers(sample[:100], {"quality": ImageQuality(), "quality_strict": ImageQuality(dark=0.95)})
    assert list(rep.scores) == ["quality", "quality_strict"]
    assert rep.flags.sum() >= 0 and set(rep.timings) == {"quality", "quality_strict"}


def test_verbose_shows_progress(sample, capsys):
    find_outliers(sample[:300], [ImageQuality(), NearDuplicates()], verbose=True)
    out = capsys.readouterr()
    assert "image_quality: 0 flagged" in out.out
    assert "image quality: 300/300" in out.err and "phash: 300/300" in out.err
