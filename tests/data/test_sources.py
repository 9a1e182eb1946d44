import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf.data.sources import (
    BUILTIN_TRAIN,
    HELDOUT_FRACTION,
    EvalImages,
    ImageFolder,
    RandomCrops,
    builtin_photos,
    class_labels,
    open_source,
    tile_boxes,
)

from ..helpers import write_images


def test_builtin_splits_do_not_overlap():
    train, heldout, unseen = builtin_photos("train"), builtin_photos("heldout"), builtin_photos("unseen")
    assert len(train) == len(heldout) == len(BUILTIN_TRAIN)
    for (_, a), (_, b) in zip(train, heldout):
        assert a.width == b.width
        # the held-out strip is the bottom HELDOUT_FRACTION of the photo, disjoint from the training part
        assert b.height == round((a.height + b.height) * HELDOUT_FRACTION)
    assert {n for n, _ in unseen}.isdisjoint(BUILTIN_TRAIN)
    assert all(image.mode == "RGB" for _, image in train + heldout + unseen)
    with pytest.raises(ValueError, match="builtin:heldout"):
        builtin_photos("test")


def test_random_crops_are_deterministic_per_epoch(tmp_path):
    source = ImageFolder(write_images(tmp_path))
    crops = RandomCrops(source, 16, length=10, seed=3)
    first = crops[4]
    assert first.shape == (3, 16, 16)
    assert torch.equal(crops[4], first)
    crops.set_epoch(1)
    assert not torch.equal(crops[4], first)
    assert len(crops) == 10


def test_a_missing_or_empty_image_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither"):
        open_source(str(tmp_path / "nowhere"))


def test_corrupt_files_are_skipped_by_name(tmp_path, caplog):
    folder = write_images(tmp_path / "data", count=3)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    images = EvalImages(str(folder), 16)
    assert len(images) == 3 and images.skipped == [str(folder / "broken.png")]
    assert "broken.png" in caplog.text
    crops = RandomCrops(ImageFolder(folder), 16, length=8)
    assert all(crops[i].shape == (3, 16, 16) for i in range(8))  # the broken file is passed over


def test_eval_images_of_a_folder_are_center_crops(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("RGB", (30, 10), (0, 255, 0)).save(folder / "green.png")
    images = EvalImages(str(folder), 8)
    assert images[0].shape == (3, 8, 8) and images[0][1].min() == 1.0


def test_builtin_eval_tiles_overlap_and_mirror():
    assert tile_boxes(130, 70, 64, 64) == [(0, 0, 64, 64), (64, 0, 128, 64)]
    assert len(tile_boxes(130, 70, 64, 16)) == 5  # lefts 0, 16, 32, 48, 64; one row
    images = EvalImages("builtin:unseen", 64)
    assert images[0].shape == (3, 64, 64) and torch.equal(images[1], images[0].flip(-1))
    assert images.tiles[2][1] == (16, 0, 80, 64)  # a quarter tile on
    # 32x the non-overlapping tiles, give or take the borders: enough tokens per code to count usage on.
    plain = sum(len(tile_boxes(c.width, c.height, 64, 64)) for c in images.scaled)
    assert 20 * plain < len(images) < 40 * plain


def test_a_saved_datasets_folder_is_read_by_its_image_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(3)]
    ds = datasets.Dataset.from_dict({"picture": images, "label": [0, 1, 2]},
                                    features=datasets.Features({"picture": datasets.Image(),
                                                                "label": datasets.Value("int64")}))
    ds.save_to_disk(tmp_path / "ds")
    source = open_source(str(tmp_path / "ds"))
    assert len(source) == 3 and source[0].size == (24, 20)
    with pytest.raises(ValueError, match="image column"):
        open_source(str(tmp_path / "ds"), image_column="photo")


def test_sub_folders_and_builtin_photos_give_the_class_labels(tmp_path):
    write_images(tmp_path / "root" / "zebra", count=2)
    write_images(tmp_path / "root" / "ant", count=3, seed=1)
    labels, names = class_labels(open_source(str(tmp_path / "root")))
    assert names == ["ant", "zebra"] and labels == [0, 0, 0, 1, 1]  # sorted paths: ant/* then zebra/*
    labels, names = class_labels(open_source(str(write_images(tmp_path / "flat", count=2))))
    assert names == ["flat"] and labels == [0, 0]
    labels, names = class_labels(open_source("builtin:heldout"))
    assert names == list(BUILTIN_TRAIN) and labels == list(range(len(BUILTIN_TRAIN)))


def test_a_class_label_column_gives_the_labels_and_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    features = datasets.Features({"image": datasets.Image(), "kind": datasets.ClassLabel(names=["cat", "dog"]),
                                  "score": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": images, "kind": [1, 0, 1], "score": [0, 5, 1]},
                               features=features).save_to_disk(tmp_path / "ds")
    source = open_source(str(tmp_path / "ds"))
    assert class_labels(source) == ([1, 0, 1], ["cat", "dog"])
    with pytest.raises(ValueError, match="not a column"):
        class_labels(source, "breed")
    labels, names = class_labels(source, "score")
    assert labels == [0, 5, 1] and len(names) == 6
