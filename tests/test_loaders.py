"""Loaders on real bundled cells written out as npz files, class folders and MedMNIST layouts."""

import hashlib
import http.server
import io
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bloodcell.datasets import (
    DatasetSplits,
    decode_image,
    load,
    load_folder,
    load_medmnist,
    load_npz,
    load_sample,
    sample_attribution,
    write_sample_folder,
)
from bloodcell.datasets import medmnist as medmnist_module
from bloodcell.errors import (
    ChecksumError,
    ConfigurationError,
    DataFileNotFoundError,
    DownloadError,
    EmptyDatasetError,
    InvalidDataError,
    InvalidDtypeError,
    UnknownClassError,
    UnreadableFileError,
)


# -- sample ------------------------------------------------------------------------------------
def test_load_sample_per_class_and_attribution():
    few = load_sample(per_class=3)
    assert len(few) == 24 and set(few.class_counts().values()) == {3}
    assert "CC BY 4.0" in sample_attribution() and "Acevedo" in sample_attribution()
    with pytest.raises(ConfigurationError):
        load_sample(per_class=0)


# -- npz ---------------------------------------------------------------------------------------
def test_an2dl_npz_with_int_column_and_one_hot_labels(tmp_path, small_sample):
    np.savez(tmp_path / "col.npz", images=small_sample.images, labels=small_sample.labels[:, None])
    np.savez(tmp_path / "hot.npz", images=small_sample.images, labels=np.eye(8)[small_sample.labels])
    for name in ("col.npz", "hot.npz"):
        data = load_npz(tmp_path / name)
        assert np.array_equal(data.images, small_sample.images)
        assert np.array_equal(data.labels, small_sample.labels)


def test_save_npz_round_trip_keeps_metadata(tmp_path, small_sample):
    path = small_sample.save_npz(tmp_path / "out" / "cells.npz")
    back = load_npz(path)
    assert np.array_equal(back.images, small_sample.images)
    assert list(back.ids) == list(small_sample.ids) and back.class_names == small_sample.class_names
    assert list(tmp_path.joinpath("out").iterdir()) == [tmp_path / "out" / "cells.npz"]  # no temp files left


def test_npz_resize_on_load(tmp_path, small_sample):
    np.savez(tmp_path / "a.npz", images=small_sample.images, labels=small_sample.labels)
    assert load_npz(tmp_path / "a.npz", image_size=64).image_shape == (64, 64, 3)


def _medmnist_file(path: Path, sample) -> Path:
    parts = {"train": sample[:400], "val": sample[400:600], "test": sample[600:]}
    arrays = {}
    for name, part in parts.items():
        arrays[f"{name}_images"] = part.images
        arrays[f"{name}_labels"] = part.labels[:, None].astype(np.uint8)  # MedMNIST stores N×1 uint8
    np.savez(path, **arrays)
    return path


def test_medmnist_layout_pick_split_or_all(tmp_path, sample):
    path = _medmnist_file(tmp_path / "bloodmnist_64.npz", sample)
    val = load_npz(path, "val")
    assert len(val) == 200 and val.sources[0] == "bloodmnist_64/val"
    splits = load_npz(path, "all")
    assert isinstance(splits, DatasetSplits) and [len(s) for s in splits] == [400, 200, 200]
    assert np.array_equal(splits.test.images, sample.images[600:])
    with pytest.raises(ConfigurationError, match="split="):
        load_npz(path)


def test_npz_errors(tmp_path, small_sample):
    with pytest.raises(DataFileNotFoundError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    with pytest.raises(DataFileNotFoundError, match="load_folder"):
        load_npz(tmp_path)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UnreadableFileError, match="npz"):
        load_npz(tmp_path / "text.npz")
    np.savez(tmp_path / "keys.npz", x=small_sample.images, y=small_sample.labels)
    with pytest.raises(InvalidDataError, match="expected 'images' and 'labels'"):
        load_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "half.npz", images=small_sample.images)
    with pytest.raises(InvalidDataError, match="lacks"):
        load_npz(tmp_path / "half.npz")
    np.savez(tmp_path / "split.npz", images=small_sample.images, labels=small_sample.labels)
    with pytest.raises(ConfigurationError, match="no splits"):
        load_npz(tmp_path / "split.npz", "train")
    np.savez(tmp_path / "float.npz", images=small_sample.images / 255.0, labels=small_sample.labels)
    with pytest.raises(InvalidDtypeError, match="cast=True"):
        load_npz(tmp_path / "float.npz")
    assert (
        np.abs(load_npz(tmp_path / "float.npz", cast=True).images.astype(int) - small_sample.images).max()
        == 0
    )
    np.savez(tmp_path / "short.npz", images=small_sample.images, labels=small_sample.labels[:-1])
    with pytest.raises(InvalidDataError, match="differ in length"):
        load_npz(tmp_path / "short.npz")


def test_pickled_arrays_are_never_loaded(tmp_path, small_sample):
    objects = np.empty(2, dtype=object)
    objects[0], objects[1] = small_sample.images[0], small_sample.images[1]
    np.savez(tmp_path / "pickled.npz", images=objects, labels=np.array([0, 1]))
    with pytest.raises(InvalidDtypeError, match="pickled"):
        load_npz(tmp_path / "pickled.npz")


# -- folders -----------------------------------------------------------------------------------
# -- one loader for every way a dataset is named -----------------------------------------------
def test_load_dispatches_sample_folder_npz_and_dataset(tmp_path, sample, small_sample):
    assert np.array_equal(load("sample").images, sample.images)
    folder = load(write_sample_folder(tmp_path / "pbc"))
    assert len(folder) == len(sample) and folder.ids[0] == "basophil/BA_100102.jpg"
    npz = load(small_sample.save_npz(tmp_path / "cells.npz"))
    assert np.array_equal(npz.images, small_sample.images)
    assert load(small_sample) is small_sample  # a dataset is passed through
    resized = load("sample", image_size=48)
    assert resized.image_shape == (48, 48, 3) and np.array_equal(resized.labels, sample.labels)


def test_load_says_what_it_got_and_what_it_takes(tmp_path):
    with pytest.raises(DataFileNotFoundError, match=r"no such file or folder: .*nothing.*'sample'"):
        load(tmp_path / "nothing")
    with pytest.raises(InvalidDtypeError, match="got int"):
        load(3)


def test_folder_of_real_jpegs_matches_the_sample(tmp_path, sample):
    root = write_sample_folder(tmp_path / "pbc")
    data = load_folder(root)
    by_name = {Path(i).name: k for k, i in enumerate(sample.ids)}
    order = [by_name[Path(i).name] for i in data.ids]
    assert np.array_equal(data.images, sample.images[order])  # decoded pixel for pixel
    assert np.array_equal(data.labels, sample.labels[order])
    assert data.ids[0] == "basophil/BA_100102.jpg"


def test_several_roots_load_into_one_dataset(tmp_path):
    write_sample_folder(tmp_path / "train", per_class=2)
    write_sample_folder(tmp_path / "val", per_class=1)
    data = load_folder([tmp_path / "train", tmp_path / "val"])
    assert len(data) == 24
    assert data.ids[0] == "train/basophil/BA_100102.jpg" and data.ids[-1].startswith("val/platelet/")
    assert sorted(set(data.sources)) == ["train", "val"]


def test_folder_names_are_normalised_and_formats_read(tmp_path, small_sample):
    names = {0: "Basophils", 3: "immature granulocytes", 6: "NEUTROPHIL", 7: "PLT"}
    formats = ["png", "bmp", "tiff", "jpeg"]
    for k, (label, folder) in enumerate(names.items()):
        image = small_sample.images[small_sample.labels == label][0]
        (tmp_path / folder).mkdir()
        Image.fromarray(image).save(tmp_path / folder / f"cell.{formats[k]}")
    data = load_folder(tmp_path)
    assert data.class_counts() == {
        "basophil": 1,
        "eosinophil": 0,
        "erythroblast": 0,
        "ig": 1,
        "lymphocyte": 0,
        "monocyte": 0,
        "neutrophil": 1,
        "platelet": 1,
    }
    lossless = data.images[data.labels == 0][0]  # PNG is lossless: pixels survive exactly
    assert np.array_equal(lossless, small_sample.images[small_sample.labels == 0][0])


def test_folder_rgba_grayscale_and_non_square_images(tmp_path, small_sample):
    cell = small_sample.images[0]
    (tmp_path / "basophil").mkdir()
    rgba = np.dstack([cell, np.full(cell.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "basophil" / "rgba.png")
    Image.fromarray(cell).convert("L").save(tmp_path / "basophil" / "gray.png")
    wide = np.concatenate([np.zeros((96, 20, 3), np.uint8), cell, np.zeros((96, 20, 3), np.uint8)], axis=1)
    Image.fromarray(wide).save(tmp_path / "basophil" / "wide.png")
    data = load_folder(tmp_path)
    ids = list(data.ids)
    assert np.array_equal(data.images[ids.index("basophil/rgba.png")], cell)
    gray = data.images[ids.index("basophil/gray.png")]
    assert (gray[..., 0] == gray[..., 1]).all()
    assert np.array_equal(data.images[ids.index("basophil/wide.png")], cell)  # centre crop removes the bars


def test_folder_resize_and_class_map(tmp_path, small_sample):
    (tmp_path / "my_cells").mkdir()
    Image.fromarray(small_sample.images[0]).resize((360, 360)).save(tmp_path / "my_cells" / "a.png")
    with pytest.raises(UnknownClassError, match="my_cells"):
        load_folder(tmp_path)
    data = load_folder(tmp_path, image_size=48, class_map={"my_cells": "monocyte"})
    assert data.image_shape == (48, 48, 3) and data.labels.tolist() == [5]


def test_folder_errors(tmp_path, small_sample):
    with pytest.raises(DataFileNotFoundError):
        load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match="no class sub-folders"):
        load_folder(tmp_path / "empty")
    (tmp_path / "empty" / "basophil").mkdir()
    with pytest.raises(EmptyDatasetError, match="no image files"):
        load_folder(tmp_path / "empty")
    with pytest.raises(ConfigurationError, match="on_error"):
        load_folder(tmp_path / "empty", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="image_size"):
        load_folder(tmp_path / "empty", image_size=0)


def _folder_with_broken_files(root: Path, small_sample) -> Path:
    write_sample_folder(root, per_class=2)
    good = (root / "basophil").iterdir().__next__().read_bytes()
    (root / "basophil" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "eosinophil" / "notes.png").write_bytes(b"this is not an image")
    return root


def test_unreadable_files_raise_by_default(tmp_path, small_sample):
    root = _folder_with_broken_files(tmp_path / "d", small_sample)
    with pytest.raises(UnreadableFileError, match="truncated.jpg") as err:
        load_folder(root)
    assert "1 more files failed" in str(err.value) and "on_error='skip'" in str(err.value)


def test_unreadable_files_skipped_with_warning_and_listed(tmp_path, small_sample):
    root = _folder_with_broken_files(tmp_path / "d", small_sample)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        data, skipped = load_folder(root, on_error="skip", return_skipped=True)
    assert len(data) == 16 and sorted(Path(s.path).name for s in skipped) == ["notes.png", "truncated.jpg"]
    assert not any(name.endswith(("truncated.jpg", "notes.png")) for name in data.ids)
    reference = load_folder(write_sample_folder(tmp_path / "clean", per_class=2))
    assert np.array_equal(data.images, reference.images)  # compaction kept the right rows


def test_native_size_requires_equal_sizes(tmp_path, small_sample):
    (tmp_path / "ig").mkdir()
    Image.fromarray(small_sample.images[0]).save(tmp_path / "ig" / "a.png")
    Image.fromarray(small_sample.images[1][:90, :90]).save(tmp_path / "ig" / "b.png")
    with pytest.raises(UnreadableFileError, match="image_size="):
        load_folder(tmp_path, image_size=None)


# -- MedMNIST ----------------------------------------------------------------------------------
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_medmnist_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataFileNotFoundError) as err:
        load_medmnist("bloodmnist", size=128, root=tmp_path)
    message = str(err.value)
    assert "https://zenodo.org/records/10519652/files/bloodmnist_128.npz" in message
    assert "adace1e0ed228fccda1f39692059dd4c" in message and str(tmp_path / "bloodmnist_128.npz") in message


def test_medmnist_rejects_wrong_md5_and_unknown_sizes(tmp_path, sample):
    _medmnist_file(tmp_path / "bloodmnist_64.npz", sample)
    with pytest.raises(ChecksumError, match="2b94928a2ae4916078ca51e05b6b800b"):
        load_medmnist(size=64, root=tmp_path)
    assert len(load_medmnist(size=64, root=tmp_path, split="val", verify=False)) == 200
    with pytest.raises(ConfigurationError, match="sizes"):
        load_medmnist(size=96, root=tmp_path)
    with pytest.raises(ConfigurationError, match="unknown MedMNIST"):
        load_medmnist("pathmnist", root=tmp_path)


def test_medmnist_verifies_md5_and_resizes(tmp_path, sample, monkeypatch):
    path = _medmnist_file(tmp_path / "bloodmnist_64.npz", sample)
    name, url, _ = medmnist_module.MEDMNIST_FILES["bloodmnist"][64]
    monkeypatch.setitem(medmnist_module.MEDMNIST_FILES["bloodmnist"], 64, (name, url, _md5(path)))
    train = load_medmnist(size=64, root=tmp_path, split="train", image_size=None)
    assert np.array_equal(train.images, sample.images[:400])
    assert load_medmnist(size=64, root=tmp_path, split="test", image_size=64).image_shape == (64, 64, 3)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def test_medmnist_download_from_a_local_server(tmp_path, sample, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    path = _medmnist_file(served / "bloodmnist.npz", sample)
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bloodmnist.npz"
        monkeypatch.setitem(
            medmnist_module.MEDMNIST_FILES["bloodmnist"], 28, ("bloodmnist.npz", url, _md5(path))
        )
        root = tmp_path / "cache"
        with pytest.raises(DataFileNotFoundError):
            load_medmnist(root=root)  # nothing is downloaded unless asked
        data = load_medmnist(root=root, download=True, split="val", image_size=None)
        assert len(data) == 200 and (root / "bloodmnist.npz").exists()
        assert [p.name for p in root.iterdir()] == ["bloodmnist.npz"]  # no temporary file left
        # a corrupt download is refused and leaves nothing behind
        monkeypatch.setitem(
            medmnist_module.MEDMNIST_FILES["bloodmnist"], 28, ("bloodmnist.npz", url, "0" * 32)
        )
        with pytest.raises(ChecksumError, match="damaged"):
            load_medmnist(root=tmp_path / "cache2", download=True)
        assert not any((tmp_path / "cache2").iterdir())
    finally:
        server.shutdown()


def test_medmnist_offline_download_names_the_alternative(tmp_path, monkeypatch):
    with __import__("socket").socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/bloodmnist.npz"
    monkeypatch.setitem(medmnist_module.MEDMNIST_FILES["bloodmnist"], 28, ("bloodmnist.npz", url, "f" * 32))
    with pytest.raises(DownloadError) as err:
        load_medmnist(root=tmp_path, download=True)
    assert (
        url in str(err.value)
        and str(tmp_path / "bloodmnist.npz") in str(err.value)
        and "f" * 32 in str(err.value)
    )
    assert not any(tmp_path.iterdir())


def test_decoding_bytes_reports_the_problem():
    from bloodcell.datasets import decode_image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buf, "BMP")
    assert decode_image(buf.getvalue())[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(UnreadableFileError, match="cannot decode"):
        decode_image(b"\x00\x01garbage")


# -- files that are not what they claim ----------------------------------------------------------
def test_npz_that_is_no_zip_archive_says_what_it_looks_like(tmp_path):
    jpeg = next((write_sample_folder(tmp_path / "pbc", per_class=1) / "basophil").iterdir())
    (tmp_path / "jpeg.npz").write_bytes(jpeg.read_bytes())
    (tmp_path / "text.npz").write_text("images,labels\n0,basophil\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", load_sample(per_class=1).images)
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    looks = {"jpeg": "a JPEG image", "text": "a text file", "empty": "empty", "array": "a single .npy array"}
    for name, what in looks.items():
        with pytest.raises(UnreadableFileError, match=r"is not an \.npz \(zip\) archive") as err:
            load_npz(tmp_path / f"{name}.npz")
        assert what in str(err.value) and f"{name}.npz" in str(err.value)
        assert "allow_pickle" not in str(err.value) and "pickle.load" not in str(err.value)


def test_class_folder_without_images_is_refused(tmp_path):
    root = write_sample_folder(tmp_path / "pbc", per_class=2)
    for f in (root / "monocyte").iterdir():
        f.unlink()
    with pytest.raises(EmptyDatasetError, match="monocyte") as err:
        load_folder(root)
    message = str(err.value)
    assert ".jpg" in message and ".png" in message and "Add images" in message and "remove" in message
    (root / "monocyte" / "cell.gif").write_bytes(b"GIF89a")  # a file with an ending load_folder skips
    with pytest.raises(EmptyDatasetError, match=r"'cell\.gif'.*extensions="):
        load_folder(root)
    # A root that simply lacks class folders is a dataset: here the five white-cell classes.
    (root / "monocyte" / "cell.gif").unlink()
    write_sample_folder(root, per_class=2)
    for name in ("erythroblast", "ig", "platelet"):
        shutil.rmtree(root / name)
    counts = load_folder(root).class_counts()
    assert {k: v for k, v in counts.items() if v} == {
        "basophil": 2,
        "eosinophil": 2,
        "lymphocyte": 2,
        "monocyte": 2,
        "neutrophil": 2,
    }


def _real_png(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "cell.png"
    Image.fromarray(load_sample(per_class=1).images[0]).save(path)  # 96×96 = 9,216 pixels
    return path


def test_image_over_pillows_warning_limit_is_refused(tmp_path, monkeypatch):
    path = _real_png(tmp_path / "pbc" / "basophil")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 96 - 1)  # Pillow only warns above this
    for action in ("ignore", "error"):  # whether or not the user made Pillow's warning an error
        with warnings.catch_warnings():
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            with pytest.raises(UnreadableFileError, match="cell.png") as err:
                decode_image(path)
        message = str(err.value)
        assert "9,216 pixels" in message and "9,215" in message and "MAX_IMAGE_PIXELS" in message
        assert "downscale" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(UnreadableFileError, match=r"96×96 = 9,216 pixels"):
            load_folder(tmp_path / "pbc")


def test_image_over_pillows_error_limit_is_refused(tmp_path, monkeypatch):
    path = _real_png(tmp_path / "pbc" / "basophil")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 96 // 2 - 1)  # Pillow raises above twice this
    with pytest.raises(UnreadableFileError, match="cell.png") as err:
        decode_image(path)
    message = str(err.value)
    assert "9,216 pixels" in message and "4,607" in message and "MAX_IMAGE_PIXELS" in message
    with pytest.raises(UnreadableFileError, match=r"cell\.png has 9,216 pixels"):
        load_folder(tmp_path / "pbc")
