"""Outlier detectors on the real bundled sample with planted contaminants."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

import bloodcell as bc
from bloodcell.datasets import BloodCellDataset
from bloodcell.errors import (
    ConfigurationError,
    EmptyDatasetError,
    InvalidDataError,
    InvalidDtypeError,
    NotFittedError,
)
from bloodcell.outliers import (
    EmbeddingOutliers,
    ExactDuplicates,
    ImageQuality,
    NearDuplicates,
    StainProfile,
    find_outliers,
)

skd = pytest.importorskip("skimage.data")


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4] / 255.0
        a = a[..., :3] * alpha + 255 * (1 - alpha)
    return np.asarray(a, np.uint8)


def _resize(a: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    img = Image.fromarray(_rgb(a))
    if box is not None:
        img = img.crop(box)
    return np.asarray(img.resize((96, 96), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def planted(sample: BloodCellDataset) -> tuple[BloodCellDataset, dict[str, np.ndarray]]:
    """The 800 real cells (first), then planted contaminants of each kind; kind → indices."""
    rng = np.random.default_rng(0)
    n_real = len(sample)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cartoon = _resize(skd.logo())
    parts["copies"] = (np.repeat(cartoon[None], 40, 0), np.arange(40) % 8)  # spread over classes
    photos = [_resize(skd.astronaut(), (100, 0, 400, 300)), _resize(skd.chelsea()), _resize(skd.coffee()),
              _resize(skd.rocket()), _resize(skd.immunohistochemistry()), _resize(skd.retina()),
              _resize(skd.colorwheel()), _resize(skd.hubble_deep_field(), (0, 0, 500, 500))]  # fmt: skip
    greys = [_resize(skd.camera()), _resize(skd.text()), _resize(skd.coins()), _resize(skd.page())]
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::6] = (20, 200, 40)
    unique = np.stack(photos + greys + [stripes])
    parts["non_blood"] = (unique, rng.integers(0, 8, len(unique)))
    colours = np.array([[235, 235, 235], [0, 0, 0], [210, 190, 200], [90, 60, 140]], np.uint8)
    parts["blank"] = (np.broadcast_to(colours[:, None, None], (4, 96, 96, 3)).copy(), np.zeros(4, np.int64))
    pick = rng.choice(n_real, 16, replace=False)
    parts["dark"] = ((sample.images[pick[:8]] * 0.3).astype(np.uint8), sample.labels[pick[:8]])
    blurred = [
        np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(2.0)))
        for im in sample.images[pick[8:]]
    ]
    parts["blurred"] = (np.stack(blurred), sample.labels[pick[8:]])
    near = []
    for im in sample.images[[3, 4]]:
        buf = io.BytesIO()
        Image.fromarray(np.clip(im.astype(int) + 6, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=70)
        near.append(np.asarray(Image.open(buf)))
    parts["near_copy"] = (np.stack(near), sample.labels[[3, 4]])
    # Exact copies of real cells 0..2; the copy of cell 2 under another label.
    copy_labels = sample.labels[[0, 1, 2]].copy()
    copy_labels[2] = (copy_labels[2] + 1) % 8
    parts["exact_copy"] = (sample.images[[0, 1, 2]].copy(), copy_labels)

    images, labels, kinds = [sample.images], [sample.labels], {"real": np.arange(n_real)}
    start = n_real
    for kind, (imgs, labs) in parts.items():
        images.append(imgs)
        labels.append(labs)
        kinds[kind] = np.arange(start, start + len(imgs))
        start += len(imgs)
    return BloodCellDataset(np.concatenate(images), np.concatenate(labels)), kinds


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


def test_exact_duplicates_scores_and_keep_none():
    images = np.zeros((5, 8, 8, 3), np.uint8)
    images[3:] = 50
    data = BloodCellDataset(images, [0, 0, 0, 4, 4])
    det = ExactDuplicates().fit(data)
    assert det.score(data).tolist() == [2, 2, 2, 1, 1]
    assert det.predict(data).tolist() == [False, True, True, False, True]
    assert ExactDuplicates(keep="none").fit(data).predict(data).all()
    # Arrays without labels work too (no label conflicts then).
    assert det.predict(images).tolist() == [False, True, True, False, True]


def test_near_duplicates_catch_re_encoded_copies_but_not_distinct_cells(sample):
    data = sample[:200]
    buf = io.BytesIO()
    Image.fromarray(data.images[7]).save(buf, "JPEG", quality=60)
    shifted = np.roll(np.asarray(Image.open(buf)), 1, axis=1)
    both = data.concat(BloodCellDataset(shifted[None], data.labels[7:8]))
    for method in ("phash", "dhash"):
        det = NearDuplicates(method=method, max_distance=40 if method == "phash" else 60).fit(both)
        assert np.flatnonzero(det.predict(both)).tolist() == [200], method
        groups = det.detect(both).groups
        assert [g.indices.tolist() for g in groups] == [[7, 200]]
    scores = NearDuplicates().fit(both).score(both)
    assert scores[200] == scores[7] > 0.8 > np.delete(scores, [7, 200]).max()


def test_perceptual_hash_matches_scipy_dct_reference(sample):
    from scipy.fft import dctn

    imgs = sample.images[:5]
    ours = bc.outliers.perceptual_hash(imgs, "phash", hash_size=8)
    gray = imgs.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    small = gray.reshape(5, 32, 3, 32, 3).mean(axis=(2, 4))  # 96 → 32 by 3×3 area averaging
    low = dctn(small, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(5, -1)
    ref = np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)
    assert bc.outliers.hamming_distances(ours, ref).diagonal().max() <= 1


def test_image_quality_thresholds_and_disabling(sample):
    det = ImageQuality().fit(sample)
    assert 150 < det.typical_["brightness"] < 230
    dark = (sample.images[:3] * 0.3).astype(np.uint8)
    assert det.explain(dark) == [("dark",)] * 3
    assert (det.score(dark) > 1).all() and (det.score(sample) < 1).all()
    assert not ImageQuality(dark=None).fit(sample).predict(dark).any()
    gray = np.repeat(sample.images[:2].mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8)
    assert det.explain(gray) == [("grayscale",)] * 2
    with pytest.raises(ConfigurationError, match="dark"):
        ImageQuality(dark=1.5).fit(sample)


def test_stain_profile_is_robust_to_mass_copies(sample):
    """1,600 copies in AN2DL were 12 % of the data; here 200 copies are 20 % of the sample."""
    cartoon = _resize(skd.logo())
    data = sample.concat(BloodCellDataset(np.repeat(cartoon[None], 200, 0), np.arange(200) % 8))
    det = StainProfile().fit(data)
    flags = det.predict(data)
    assert flags[800:].all() and not flags[:800].any()
    # Fitted centre stays on the cells: the copies count once.
    clean_center = StainProfile().fit(sample).center_
    assert np.abs(det.center_ - clean_center).max() < 3


def test_embedding_outliers_with_a_callable(sample, planted):
    data, kinds = planted

    def colour_stats(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)

    for method in ("isolation_forest", "lof"):
        det = EmbeddingOutliers(
            extractor=colour_stats, method=method, n_components=None, n_estimators=50
        ).fit(data)
        scores = det.score(data)
        assert scores.shape == (len(data),)
        # The planted non-blood images rank above the typical real cell.
        assert np.median(scores[kinds["non_blood"]]) > np.percentile(scores[kinds["real"]], 90), method
    per_class = EmbeddingOutliers(
        extractor=colour_stats, per_class=True, n_components=None, n_estimators=20
    ).fit(sample)
    assert len(per_class.models_) == 8
    with pytest.raises(ConfigurationError, match="labels"):
        EmbeddingOutliers(extractor=colour_stats, per_class=True).fit(sample.images)


def test_embedding_outliers_with_a_keras_model(small_sample):
    import keras

    inputs = keras.Input((96, 96, 3))
    maps = keras.layers.Conv2D(4, 3, strides=4)(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, maps)  # feature maps: pooled by the detector
    det = EmbeddingOutliers(extractor=model, n_components=2, batch_size=8).fit(small_sample)
    assert det.embed(small_sample).shape == (16, 4)
    assert det.predict(small_sample).shape == (16,)


def test_embedding_outliers_from_a_registry_backbone_name(small_sample):
    det = EmbeddingOutliers(
        extractor="mobilenetv3small", weights=None, n_components=2, n_estimators=20, batch_size=16
    ).fit(small_sample)
    features = det.embed(small_sample)
    assert features.shape[0] == 16 and features.shape[1] > 2
    assert np.isfinite(det.score(small_sample)).all()


def test_embedding_outliers_imagenet_name_fails_clearly_offline(small_sample, monkeypatch, tmp_path):
    import urllib.error

    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    from bloodcell.errors import WeightsUnavailableError

    def offline(*args, **kwargs):  # what urllib raises without DNS
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # an empty cache: Keras must download
    with pytest.raises(WeightsUnavailableError, match="weights=None"):
        EmbeddingOutliers(extractor="mobilenetv3small", weights="imagenet").fit(small_sample)


def test_interface_follows_scikit_learn_conventions(sample):
    det = NearDuplicates(max_distance=10)
    assert repr(det) == "NearDuplicates(max_distance=10)"
    assert det.get_params()["hash_size"] == 16
    assert det.set_params(hash_size=8) is det and det.hash_size == 8
    with pytest.raises(TypeError, match="no parameter"):
        det.set_params(bogus=1)
    with pytest.raises(NotFittedError, match="fit"):
        ImageQuality().score(sample)
    assert isinstance(NotFittedError("x"), ValueError)


def test_bad_input_gets_one_clear_error(sample):
    with pytest.raises(InvalidDtypeError, match="BloodCellDataset"):
        find_outliers(sample.images)
    with pytest.raises(ConfigurationError, match="OutlierDetector"):
        find_outliers(sample, ["image_quality"])
    with pytest.raises(InvalidDataError, match="not it"):
        find_outliers(sample[:50]).clean(sample[50:100])
    with pytest.raises(ConfigurationError, match="max_distance"):
        NearDuplicates(max_distance=300).fit(sample)
    with pytest.raises(ConfigurationError, match="keep"):
        ExactDuplicates(keep="last").fit(sample)
    with pytest.raises(EmptyDatasetError):
        find_outliers(sample[:0])
    with pytest.raises(EmptyDatasetError, match="distinct"):
        StainProfile().fit(np.zeros((5, 8, 8, 3), np.uint8))
    with pytest.raises(InvalidDtypeError, match="uint8"):
        ImageQuality().fit(sample.images.astype(np.float32))


def test_detectors_by_name_in_a_dict(sample):
    rep = find_outliers(sample[:100], {"quality": ImageQuality(), "quality_strict": ImageQuality(dark=0.95)})
    assert list(rep.scores) == ["quality", "quality_strict"]
    assert rep.flags.sum() >= 0 and set(rep.timings) == {"quality", "quality_strict"}


def test_label_issues_from_out_of_fold_probabilities(sample):
    """Flipped labels are found when the (out-of-fold) model agrees with the true class."""
    from bloodcell.outliers import LabelIssues

    rng = np.random.default_rng(0)
    true = sample.labels
    # A plausible model: right class most probable for 90 % of cells, confused for the rest.
    probs = rng.dirichlet(np.ones(8), len(true)) * 0.4
    correct = rng.random(len(true)) < 0.9
    probs[np.arange(len(true)), np.where(correct, true, (true + 3) % 8)] += 0.6
    flipped = rng.choice(len(true), 20, replace=False)
    noisy = true.copy()
    noisy[flipped] = (noisy[flipped] + 1 + rng.integers(0, 7, 20)) % 8
    noisy_data = sample.replace(labels=noisy)
    det = LabelIssues(pred_probs=probs).fit(noisy_data)
    flags = det.predict(noisy_data)
    assert flags[flipped].mean() >= 0.85
    assert flags[~np.isin(np.arange(len(true)), flipped)].mean() < 0.15
    assert (det.score(noisy_data)[flags] > 0).all()
    with pytest.raises(InvalidDataError, match="shape"):
        LabelIssues(pred_probs=probs[:10]).fit(noisy_data)
    with pytest.raises(ConfigurationError, match="labels"):
        LabelIssues(pred_probs=probs).fit(sample.images)


def test_verbose_shows_progress(sample, capsys):
    find_outliers(sample[:300], [ImageQuality(), NearDuplicates()], verbose=True)
    out = capsys.readouterr()
    assert "image_quality: 0 flagged" in out.out
    assert "image quality: 300/300" in out.err and "phash: 300/300" in out.err
