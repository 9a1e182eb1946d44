import io
import logging
import tarfile

import pytest
import torch
from PIL import Image

from fvq_hf.data.spec import DataSpec
from fvq_hf.data.streams import StreamedCrops, expand_shards, open_stream

from ..helpers import write_shards


def _keys(crops: StreamedCrops) -> list[str]:
    return [key for key, _ in crops.examples()]


def test_brace_patterns_expand_to_the_shards_and_a_missing_one_is_named(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=3)
    assert DataSpec.parse(pattern).kind == "shards" and DataSpec.parse(str(tmp_path)).kind == "path"
    assert [p.rsplit("/", 1)[1] for p in expand_shards(pattern)] == ["shard-000.tar", "shard-001.tar", "shard-002.tar"]
    with pytest.raises(FileNotFoundError, match=r"1 of 4 shards do not exist \(first: .*shard-003.tar\)"):
        expand_shards(pattern.replace("002", "003"))


def test_shards_stream_random_crops_a_pure_function_of_the_epoch(tmp_path):
    stream, column = open_stream(write_shards(tmp_path / "shards"))
    assert column == "png"
    crops = StreamedCrops(stream, column, 32, seed=0)
    first = list(crops)
    assert len(first) == 12 and all(x.shape == (3, 32, 32) and -1 <= x.min() <= x.max() <= 1 for x in first)
    assert all(torch.equal(a, b) for a, b in zip(first, crops))  # the same epoch again
    order = _keys(crops)
    crops.set_epoch(1)
    assert sorted(_keys(crops)) == sorted(order) and _keys(crops) != order  # reshuffled, the same examples


def test_each_process_reads_its_own_shards(tmp_path):
    stream, column = open_stream(write_shards(tmp_path / "shards", shards=4))
    shares = [_keys(StreamedCrops(stream, column, 32, rank=rank, world_size=2)) for rank in (0, 1)]
    shards = [{key.split("-")[0] for key in share} for share in shares]
    assert not shards[0] & shards[1] and len(shards[0]) == len(shards[1]) == 2  # disjoint shards, two each
    assert sorted(shares[0] + shares[1]) == sorted(_keys(StreamedCrops(stream, column, 32)))


def test_an_unreadable_image_in_a_shard_is_skipped_by_name(tmp_path, caplog):
    pattern = write_shards(tmp_path / "shards", shards=1)
    with tarfile.open(tmp_path / "shards" / "shard-000.tar", "a") as tar:
        info = tarfile.TarInfo("broken.png")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"not a png"))
    stream, column = open_stream(pattern.replace("{000..000}", "000"))
    with caplog.at_level(logging.WARNING):
        assert len(list(StreamedCrops(stream, column, 32))) == 3
    assert "broken" in caplog.text


def test_a_datasets_folder_streams_with_hf_prefix(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (40, 36), (i * 40, 0, 0)) for i in range(5)]
    folder = tmp_path / "parquet"
    folder.mkdir()
    datasets.Dataset.from_dict({"picture": images}, features=datasets.Features(
        {"picture": datasets.Image()})).to_parquet(str(folder / "train.parquet"))
    stream, column = open_stream(f"hf:{folder}")
    assert column == "picture"
    assert len(list(StreamedCrops(stream, column, 32))) == 5
    with pytest.raises(ValueError, match="no image column nothing"):
        open_stream(f"hf:{folder}", image_column="nothing")
    with pytest.raises(ValueError, match="--streaming reads hf:<name> or tar shards"):
        open_stream(str(folder))


def test_a_truncated_shard_is_named(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=2)
    shard = tmp_path / "shards" / "shard-001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    stream, column = open_stream(pattern)
    with pytest.raises(ValueError, match=r"cannot be read \(.*\): .*shard-001.tar \(") as error:
        list(StreamedCrops(stream, column, 32, source=pattern))
    assert "shard-000" not in str(error.value)
