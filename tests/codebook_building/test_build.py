"""fvq-build-codebook end to end on tiny encoders: what the table holds, per class or global, the cap, the seed, the
data sources, and two processes against one."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fvq_hf.cli.build_codebook import main
from fvq_hf.codebook_building import CodebookBuildConfig, build_codebook
from fvq_hf.data.image_io import pil_to_tensor, resize_center_crop
from fvq_hf.data.table_file import load_table

from ..helpers import make_tiny_model, run_in_two_processes, write_images, write_shards, write_tiny_clip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny tokenizer (32 px, an 8 x 8 grid of 32-d features) and an image folder of two classes, a (3) and b (2)."""
    root = tmp_path_factory.mktemp("build")
    model = make_tiny_model().eval()
    model.save_pretrained(root / "tok")
    write_images(root / "data" / "a", count=3, size=(40, 36))
    write_images(root / "data" / "b", count=2, size=(36, 44), seed=1)
    return root, model


def build(root: Path, name: str, **changes):
    config = dict(encoder=str(root / "tok"), data=str(root / "data"), output=str(root / f"{name}.safetensors"),
                  codebook_size=64, pool=2, num_workers=0, overwrite=True)
    return build_codebook(CodebookBuildConfig(**{**config, **changes}))


def pooled_by_hand(model, folder: Path) -> np.ndarray:
    """Each image's centre crop through the encoder, 2 x 2 average-pooled: `(images x 16, 32)`."""
    images = torch.stack([pil_to_tensor(resize_center_crop(Image.open(p).convert("RGB"), 32))
                          for p in sorted(folder.glob("*.png"))])
    with torch.no_grad():
        return F.avg_pool2d(model.encoder(images), 2).flatten(2).transpose(1, 2).reshape(-1, 32).numpy()


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two tables hold the same rows, in any order (to fp32 rounding)."""
    order = lambda t: t[np.lexsort(t.T[::-1])]  # noqa: E731
    return a.shape == b.shape and np.allclose(order(a), order(b), rtol=0, atol=1e-5)


def test_per_class_rows_come_class_by_class_and_a_class_with_k_samples_keeps_them(files):
    root, model = files
    result = build(root, "classes")
    meta = {k: json.loads(v) if v[:1] in "[{0123456789" else v for k, v in result.metadata.items()}
    assert result.table.shape == (64, 32)
    assert meta["groups"] == "classes" and meta["group_names"] == ["a", "b"]
    assert meta["group_codebook_sizes"] == [32, 32] and meta["samples_per_group"] == [48, 32]
    assert meta["encoder_type"] == "fvq" and meta["feature_grid"] == [8, 8] and meta["pooled_grid"] == [4, 4]
    assert meta["pooling"] == 2 and meta["feature_dim"] == 32 and meta["seed"] == 0 and meta["codebook_size"] == 64
    assert meta["kmeans"]["library"] == "faiss" and len(meta["kmeans"]["iterations"]) == 2
    # class b gives 2 x 16 vectors for its 32 centres: each is a centre, so its rows are the pooled features
    assert same_rows(result.table[32:].numpy(), pooled_by_hand(model, root / "data" / "b"))
    a = pooled_by_hand(model, root / "data" / "a")
    assert not same_rows(result.table[:32].numpy(), a[:32])
    # each of a's centres is the mean of some of a's vectors: inside their bounding box
    assert (result.table[:32].numpy() >= a.min(0) - 1e-5).all() and (result.table[:32].numpy() <= a.max(0) + 1e-5).all()
    assert torch.equal(load_table(root / "classes.safetensors")[0], result.table)


def test_zero_kmeans_iterations_keeps_a_random_selection_of_the_pooled_vectors(files):
    root, model = files
    result = build(root, "selection", groups="global", codebook_size=40, kmeans_iterations=0)
    kmeans_meta = json.loads(result.metadata["kmeans"])
    pooled = np.concatenate([pooled_by_hand(model, root / "data" / c) for c in ("a", "b")])
    rows = result.table.numpy()
    # every row is one of the pooled vectors (80 of them), 40 distinct ones
    assert all(np.abs(pooled - row).max(1).min() < 1e-5 for row in rows) and len(np.unique(rows, axis=0)) == 40
    assert kmeans_meta["iterations"] == [0] and "random selection" in kmeans_meta["algorithm"]


def test_global_k_means_with_k_equal_to_the_samples_keeps_every_pooled_vector(files):
    root, model = files
    result = build(root, "global", groups="global", codebook_size=80)
    every = np.concatenate([pooled_by_hand(model, root / "data" / c) for c in "ab"])
    assert same_rows(result.table.numpy(), every)
    assert json.loads(result.metadata["group_names"]) == ["all"]
    assert not torch.equal(build(root, "global-64", groups="global").table, build(root, "classes").table)


def test_a_seed_gives_the_same_table_and_the_cap_bounds_the_samples(files):
    root, _ = files
    first = build(root, "seeded", random_crops=3, samples_per_group=60, codebook_size=20)
    assert torch.equal(first.table, build(root, "again", random_crops=3, samples_per_group=60, codebook_size=20).table)
    assert json.loads(first.metadata["samples_per_group"]) == [60, 60]
    assert json.loads(first.metadata["vectors_per_group"]) == [3 * 48, 3 * 32]
    other = build(root, "other", random_crops=3, samples_per_group=60, codebook_size=20, seed=1)
    assert not torch.equal(first.table, other.table)


def test_a_clip_tower_and_streamed_shards(files, tmp_path):
    root, _ = files
    clip = build(root, "clip", encoder=str(write_tiny_clip(tmp_path / "clip")), groups="global", codebook_size=8,
                 pool=1)
    assert clip.table.shape == (8, 16) and clip.metadata["encoder_type"] == "clip"
    assert clip.metadata["features"].startswith("visual_projection(post_layernorm(last_hidden_state[:, 1:]))")
    shards = write_shards(tmp_path / "shards", shards=2, per_shard=2)
    streamed = build(root, "streamed", data=shards, groups="global", codebook_size=10, pool=4)
    assert streamed.table.shape == (10, 32) and json.loads(streamed.metadata["samples_per_group"]) == [4 * 4]


def test_the_command_on_the_builtin_photos_one_class_each(files, tmp_path, capsys):
    """... with a progress bar over the images (14 photos x 2 crops) and one over k-means (14 groups x 25 steps)."""
    root, _ = files
    main(["--encoder", str(root / "tok"), "--data", "builtin", "--random-crops", "2", "--pool", "8",
          "--codebook-size", "14", "--output", str(tmp_path / "builtin.safetensors"), "--num-workers", "0"])
    err = capsys.readouterr().err
    assert re.search(r"encoding images: 100%.*\b28/28\b", err) and re.search(r"k-means: 100%.*\b350/350\b", err), err
    table, meta = load_table(tmp_path / "builtin.safetensors")
    assert table.shape == (14, 32) and json.loads(meta["group_codebook_sizes"]) == [1] * 14
    assert json.loads(meta["group_names"])[:2] == ["astronaut", "chelsea"] and meta["random_crops"] == "2"


@pytest.mark.slow
def test_two_processes_write_the_table_of_one(files, tmp_path):
    """The same samples (each kept by its seeded key, whichever process read it), so the same centres; up to fp32
    rounding, which differs with a batch's make-up and the thread count (the encoder's convolutions)."""
    root, _ = files
    args = dict(random_crops=3, samples_per_group=70, codebook_size=20)
    one = build(root, "one", **args)
    lines = run_in_two_processes(Path(__file__).with_name("ddp_build.py"), [str(root / "tok"), str(root / "data"),
                                                                            str(tmp_path / "two.safetensors")])
    # the build ran as two processes (each its share, one writer), not as two builds of one process each
    assert [line[-3:] for line in lines] == [["STATE", "0", "2"], ["STATE", "1", "2"]]
    two, meta = load_table(tmp_path / "two.safetensors")
    torch.testing.assert_close(two, one.table, rtol=0, atol=1e-5)
    assert meta["samples_per_group"] == one.metadata["samples_per_group"] == "[70, 70]"
