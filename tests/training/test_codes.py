import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf.cli.extract_codes import main
from fvq_hf.data.image_io import pil_to_tensor, resize_center_crop
from fvq_hf.data.tokens import TokenDataset
from fvq_hf.training.codes import extract_codes

from ..helpers import make_tiny_model, perturb_bridge, write_images


@pytest.fixture
def tokenizer(tmp_path):
    model = make_tiny_model().eval()
    perturb_bridge(model)  # the zero-initialised bridge maps every token to one code
    model.save_pretrained(tmp_path / "tok")
    return model, str(tmp_path / "tok")


@pytest.fixture
def classes(tmp_path):
    write_images(tmp_path / "data" / "a", count=3, size=(40, 36))
    write_images(tmp_path / "data" / "b", count=2, size=(36, 44), seed=1)
    return tmp_path / "data"


def test_codes_of_centre_crops_and_their_flips(tokenizer, classes, tmp_path):
    model, path = tokenizer
    meta = extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    assert meta.num_classes == 2 and meta.class_names == ["a", "b"] and meta.num_samples == 5
    assert meta.codebook_size == 256 and meta.token_grid_size == [8, 8] and meta.views == ["image", "hflip"]
    codes = np.load(tmp_path / "codes" / "codes-00000.npy")
    assert codes.shape == (5, 2, 8, 8) and codes.dtype == np.uint16 and len(np.unique(codes)) > 10
    assert np.load(tmp_path / "codes" / "labels-00000.npy").tolist() == [0, 0, 0, 1, 1]
    image = pil_to_tensor(resize_center_crop(Image.open(classes / "b" / "img1.png").convert("RGB"), 32))[None]
    with torch.no_grad():
        assert np.array_equal(codes[4, 0], model.tokenize(image)[0].numpy())
        assert np.array_equal(codes[4, 1], model.tokenize(image.flip(-1))[0].numpy())
    assert json.loads((tmp_path / "codes" / "meta.json").read_text()) == dataclasses.asdict(meta)


@pytest.mark.parametrize("quantizer, said", [
    ({"quantizer_type": "residual"}, "residual tokenizer .4 codes per position."),
    ({"quantizer_type": "multiscale", "quantizer_config": {"scales": [1, 8]}},
     "multiscale tokenizer .2 scales, 65 tokens per image."),
])
def test_residual_and_multiscale_tokenizers_are_refused(quantizer, said, classes, tmp_path):
    make_tiny_model(**quantizer).save_pretrained(tmp_path / "rq")
    with pytest.raises(ValueError, match=said):
        extract_codes(str(tmp_path / "rq"), str(classes), tmp_path / "codes", num_workers=0)


def test_random_crops_of_the_builtin_photos_without_flip(tokenizer, tmp_path):
    _, path = tokenizer
    main(["--tokenizer", path, "--data", "builtin", "--random-crops", "2", "--no-flip", "--output-dir",
          str(tmp_path / "codes"), "--num-workers", "0"])
    data = TokenDataset(tmp_path / "codes")
    assert len(data) == 28 and data.num_classes == 14 and data.meta.views == ["image"]
    assert [int(data[i][1]) for i in range(16)] == list(range(14)) + [0, 1]  # crop i is of photo i % 14


def test_existing_codes_are_not_overwritten_by_accident(tokenizer, classes, tmp_path):
    _, path = tokenizer
    extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    extract_codes(path, str(classes), tmp_path / "codes", num_workers=0, overwrite=True, flip=False)
    assert TokenDataset(tmp_path / "codes").num_views == 1


def test_unreadable_images_are_skipped_without_shifting_labels(tokenizer, classes, tmp_path):
    _, path = tokenizer
    (classes / "a" / "broken.png").write_bytes(b"not a png")
    meta = extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    assert meta.num_samples == 5
    assert np.load(tmp_path / "codes" / "labels-00000.npy").tolist() == [0, 0, 0, 1, 1]


def test_a_token_dataset_draws_one_view_per_epoch_or_gives_every_view(tokenizer, classes, tmp_path):
    _, path = tokenizer
    extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    codes = np.load(tmp_path / "codes" / "codes-00000.npy")
    assert not np.array_equal(codes[3, 0], codes[3, 1])
    data = TokenDataset(tmp_path / "codes", seed=1)
    views = []
    for epoch in range(6):
        data.set_epoch(epoch)
        tokens, label = data[3]
        assert tokens.shape == (64,) and tokens.dtype == torch.long and int(label) == 1
        view = [v for v in range(2) if np.array_equal(codes[3, v].reshape(-1), tokens.numpy())]
        assert view
        views.append(view[0])
    assert set(views) == {0, 1}  # both the image and its flip are drawn over epochs
    everything = TokenDataset(tmp_path / "codes", all_views=True)
    assert len(everything) == 10 and np.array_equal(everything[7][0].numpy(), codes[3, 1].reshape(-1))


def test_broken_codes_folders_are_named(tokenizer, classes, tmp_path):
    _, path = tokenizer
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        TokenDataset(tmp_path)
    extract_codes(path, str(classes), tmp_path / "codes", num_workers=0)
    shard = tmp_path / "codes" / "codes-00000.npy"
    good = np.load(shard)
    bad = good.copy()
    bad[0, 0, 0, 0] = 256
    np.save(shard, bad)
    with pytest.raises(ValueError, match="out of range"):
        TokenDataset(tmp_path / "codes")
    shard.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="missing or corrupt"):
        TokenDataset(tmp_path / "codes")
    np.save(shard, good[:, :, :4])
    with pytest.raises(ValueError, match=r"meta.json expects \(N, 2, 8, 8\)"):
        TokenDataset(tmp_path / "codes")


def test_a_missing_tokenizer_is_named(classes, tmp_path):
    with pytest.raises(OSError, match="no-such-tokenizer"):
        extract_codes(str(tmp_path / "no-such-tokenizer"), str(classes), tmp_path / "codes", num_workers=0)


def test_tar_shards_are_streamed_once_with_their_labels(tokenizer, tmp_path):
    """Webdataset shards (streamed; `--label-column cls`, bare integers, `--num-classes`): each image's centre crop
    and its flip, in stream order, labels as written, classes "0".."C-1" (C given: class 4 need not occur);
    without the column, one class; with 2 DataLoader workers, the same samples."""
    from ..helpers import write_shards

    model, path = tokenizer
    pattern = write_shards(tmp_path / "shards", shards=2, per_shard=3, size=(40, 36), classes=4)
    main(["--tokenizer", path, "--data", pattern, "--label-column", "cls", "--num-classes", "5", "--latents",
          "--output-dir", str(tmp_path / "codes"), "--num-workers", "0"])
    meta = json.loads((tmp_path / "codes" / "meta.json").read_text())
    assert meta["class_names"] == ["0", "1", "2", "3", "4"] and meta["num_samples"] == 6 and meta["data"] == pattern
    assert np.load(tmp_path / "codes" / "labels-00000.npy").tolist() == [0, 1, 2, 3, 0, 1]
    codes = np.load(tmp_path / "codes" / "codes-00000.npy")
    from fvq_hf.data.sources import builtin_photos

    photo = builtin_photos("train")[3][1].resize((40, 36))  # the second shard's first image
    image = pil_to_tensor(resize_center_crop(photo, 32))[None]
    with torch.no_grad():
        assert np.array_equal(codes[3, 0], model.tokenize(image)[0].numpy())
        assert np.array_equal(codes[3, 1], model.tokenize(image.flip(-1))[0].numpy())
    assert np.load(tmp_path / "codes" / "latents-00000.npy").shape == (6, 2, 8, 8, 8)
    meta = extract_codes(path, pattern, tmp_path / "one", num_workers=0)
    assert meta.class_names == ["image"] and set(np.load(tmp_path / "one" / "labels-00000.npy").tolist()) == {0}
    main(["--tokenizer", path, "--data", pattern, "--label-column", "cls", "--num-classes", "5", "--output-dir",
          str(tmp_path / "workers"), "--num-workers", "2"])
    rows = {name: sorted((int(label), c.tobytes()) for label, c in zip(
        np.load(tmp_path / name / "labels-00000.npy"), np.load(tmp_path / name / "codes-00000.npy")))
        for name in ("codes", "workers")}
    assert rows["workers"] == rows["codes"]  # each worker its shard: none read twice, none left out


@pytest.mark.parametrize("argv, message", [
    (["--label-column", "cls"], "holds integers: pass --num-classes"),
    (["--label-column", "cls", "--num-classes", "3"], r"Class labels 0..3 of --label-column 'cls' lie outside \[0, 3\)"),
    (["--label-column", "nope", "--num-classes", "3"], "'nope' is not a column of the stream"),
])
def test_stream_labels_that_do_not_fit_are_named(tokenizer, tmp_path, capsys, argv, message):
    from ..helpers import write_shards

    _, path = tokenizer
    pattern = write_shards(tmp_path / "shards", shards=2, per_shard=3, size=(40, 36), classes=4)
    with pytest.raises(SystemExit) as exit_info:
        main(["--tokenizer", path, "--data", pattern, *argv, "--output-dir", str(tmp_path / "c"), "--num-workers", "0"])
    err = capsys.readouterr().err
    import re

    assert exit_info.value.code == 2 and re.search("fvq-extract-codes: error: .*" + message, err), err


@pytest.mark.slow
def test_two_processes_stream_the_shards_once_between_them(tokenizer, tmp_path):
    """2 processes over 2 shards: each writes its share, and together they hold one process's samples."""
    from pathlib import Path

    from ..helpers import run_in_two_processes, write_shards

    _, path = tokenizer
    pattern = write_shards(tmp_path / "shards", shards=2, per_shard=3, size=(40, 36), classes=4)
    common = ["--tokenizer", path, "--data", pattern, "--label-column", "cls", "--num-classes", "4", "--num-workers",
              "0"]
    run_in_two_processes(Path(__file__).with_name("extract_worker.py"), [*common, "--output-dir", str(tmp_path / "two")])
    main([*common, "--output-dir", str(tmp_path / "one")])
    rows = {}
    for name, shards in (("two", 2), ("one", 1)):
        labels = [np.load(tmp_path / name / f"labels-{r:05d}.npy") for r in range(shards)]
        codes = [np.load(tmp_path / name / f"codes-{r:05d}.npy") for r in range(shards)]
        assert [len(x) for x in labels] == ([3, 3] if shards == 2 else [6])
        rows[name] = sorted((int(label), c.tobytes()) for ls, cs in zip(labels, codes) for label, c in zip(ls, cs))
    assert rows["two"] == rows["one"]
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["class_names"] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_a_process_whose_share_of_the_stream_is_empty_writes_an_empty_share(tokenizer, tmp_path):
    """One image in one shard, 2 processes: one reads it, the other nothing; both finish, the empty share is a
    (0, ...) file, and the folder reads as one sample."""
    from pathlib import Path

    from fvq_hf.data.tokens import TokenDataset

    from ..helpers import run_in_two_processes, write_shards

    _, path = tokenizer
    pattern = write_shards(tmp_path / "shards", shards=1, per_shard=1, size=(40, 36), classes=1)
    run_in_two_processes(Path(__file__).with_name("extract_worker.py"),
                         ["--tokenizer", path, "--data", pattern, "--label-column", "cls", "--num-classes", "1",
                          "--num-workers", "0", "--output-dir", str(tmp_path / "two")])
    sizes = sorted(len(np.load(tmp_path / "two" / f"codes-{r:05d}.npy")) for r in range(2))
    assert sizes == [0, 1]
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["num_samples"] == 1
    assert len(TokenDataset(tmp_path / "two", all_views=True)) == 2  # the image and its flip
