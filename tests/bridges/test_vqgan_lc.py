"""VQGAN-LC's table of its own width and its projectors (`fvq_hf/bridges/vqgan_lc.py`): their inits, the table's
four `tuning_codebook` modes, the width checks, table files, and training through fvq-train (frozen table from a
file, resumed in bf16, two processes). The registry matrices (tests/quantizers/test_every_type.py) also run both
projectors with every quantizer type over a table of width 12: shapes, save / load, folding to identical ids."""

from __future__ import annotations

import pytest
import torch
from accelerate.utils import set_seed
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.bridges import LCLinearBridge, LCMLPBridge
from fvq_hf.data.table_file import TableFileError, load_table, save_table
from fvq_hf.training import train

from ..helpers import TINY_CONFIG, random_images, write_config
from ..training.runs import run_two_processes, saved_weights, tiny_config, train_args, with_changes

K, D, d = 256, 48, 8


def lc_model(**overrides) -> FVQModel:
    torch.manual_seed(0)
    return FVQModel(**{**TINY_CONFIG, "bridge_type": "lc-linear", "bridge_config": None, "table_dim": D, **overrides})


def test_the_projectors_start_as_theirs_at_the_same_seed():
    """Their `use_cblinear 1`: `nn.Linear(768, embed_dim)`, then `normal_(weight, std=embed_dim ** -0.5)`; `2`:
    `Sequential(Linear(768, 256), ReLU, Linear(256, embed_dim))` at PyTorch's default (models_vq.py)."""
    torch.manual_seed(3)
    theirs = nn.Linear(768, 8)
    nn.init.normal_(theirs.weight, std=8 ** -0.5)
    torch.manual_seed(3)
    ours = LCLinearBridge(100, 8, table_dim=768).projection
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    torch.manual_seed(3)
    theirs_mlp = nn.Sequential(nn.Linear(768, 256), nn.ReLU(), nn.Linear(256, 4))
    torch.manual_seed(3)
    ours_mlp = LCMLPBridge(100, 4, table_dim=768).projection
    assert all(torch.equal(a, b) for a, b in zip(ours_mlp.state_dict().values(), theirs_mlp.state_dict().values()))
    assert list(ours_mlp.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # their key names


@pytest.mark.parametrize(("mode", "freeze", "from_file"), [(-1, False, False), (-2, True, False), (0, True, True),
                                                          (1, False, True)])
def test_their_four_table_modes(mode, freeze, from_file, tmp_path):
    """`tuning_codebook` -1 / -2: a random table, uniform(-1/K, 1/K), trainable / frozen; 0 / 1: a loaded table,
    frozen (the released runs, the projector's default) / trainable."""
    model = lc_model(freeze_table=None if mode == 0 else freeze)
    table = model.quantizer.embedding.weight
    assert table.shape == (K, D) and model.quantizer.code_dim == d and table.requires_grad is not freeze
    if from_file:
        loaded = torch.randn(K, D)
        model.load_table(save_table(tmp_path / "table.safetensors", loaded, {"encoder": "test"}))
        assert torch.equal(table, loaded)
    else:
        assert table.abs().max() <= 1 / K and table.std() > 0.5 / K / 3 ** 0.5
    out = model(random_images(2, 32))
    (out.sample.square().mean() + out.codebook_loss + out.commitment_loss).backward()
    assert (table.grad is not None) is not freeze
    assert model.quantizer.bridge.projection.weight.grad.abs().sum() > 0


def test_a_width_no_bridge_can_map_is_refused():
    for bad in (dict(bridge_type="vqbridge"), dict(bridge_type="none", bridge_config=None),
                dict(bridge_type="linear", bridge_config=None)):
        with pytest.raises(ValueError, match=r"table_dim=48 differs from the code width vq_embed_dim=8.*lc-linear, "
                                             r"lc-mlp"):
            FVQModel(**{**TINY_CONFIG, **bad, "table_dim": D})
    assert lc_model(table_dim=None).quantizer.embedding.weight.shape == (K, d)  # default: as wide as the codes


def test_table_files_their_pth_and_every_bad_one(tmp_path):
    model = lc_model()
    theirs = torch.randn(K, D)
    torch.save(theirs, tmp_path / "codebook-100K.pth")  # their codebook file: torch.save(Tensor)
    assert model.load_table(tmp_path / "codebook-100K.pth") == {}
    assert torch.equal(model.quantizer.embedding.weight, theirs)
    save_table(tmp_path / "wide.safetensors", torch.randn(K, D + 1))
    with pytest.raises(TableFileError, match=r"is \(256, 49\) \(K, D\), but the model's table is \(256, 48\): set "
                                             r"num_vq_embeddings=256 and table_dim=49"):
        model.load_table(tmp_path / "wide.safetensors")
    torch.save({"weight": theirs}, tmp_path / "dict.pth")
    with pytest.raises(TableFileError, match="holds dict, not a \\(K, D\\) floating-point table"):
        model.load_table(tmp_path / "dict.pth")
    with pytest.raises(TableFileError, match="No codebook table file at"):
        model.load_table(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TableFileError, match="is not a safetensors table file"):
        model.load_table(tmp_path / "junk.safetensors")


def test_a_frozen_table_from_a_file_trains_resumes_in_bf16_and_folds(tmp_path, fresh_accelerator_state):
    """fvq-train --init-table with their released mode (a loaded frozen table, the linear projector), bf16,
    stopped and resumed: the weights of an uninterrupted run, the table exactly the file's, the projector trained;
    the folded model (K, d) gives the same ids."""
    config = write_config(tmp_path / "lc", bridge_type="lc-linear", bridge_config=None, table_dim=D)
    table = torch.randn(K, D)
    save_table(tmp_path / "table.safetensors", table)
    base = tiny_config(tmp_path, max_steps=4, checkpoint_every=100, mixed_precision="bf16", config=str(config),
                       init_table=str(tmp_path / "table.safetensors"))
    straight = train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=2))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(a["quantizer.embedding.weight"], table)
    set_seed(base.loop.seed)  # the trainer's initial model: seeded, then built from the config
    initial = FVQModel.from_config(FVQModel.load_config(config)).state_dict()
    assert not torch.equal(a["quantizer.bridge.projection.weight"], initial["quantizer.bridge.projection.weight"])
    assert straight.step == 4
    folded = FVQModel.from_pretrained(tmp_path / "straight" / "model-folded").eval()
    loaded = FVQModel.from_pretrained(tmp_path / "straight" / "model").eval()
    assert folded.config.table_dim is None and folded.quantizer.embedding.weight.shape == (K, d)
    images = random_images(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded.tokenize(images), folded.tokenize(images))


def test_a_table_that_does_not_fit_stops_fvq_train(tmp_path):
    config = write_config(tmp_path / "lc", bridge_type="lc-linear", bridge_config=None, table_dim=D)
    save_table(tmp_path / "table.safetensors", torch.randn(K // 2, D))
    with pytest.raises(TableFileError, match="set num_vq_embeddings=128"):
        train(tiny_config(tmp_path, max_steps=1, config=str(config), init_table=str(tmp_path / "table.safetensors")))


@pytest.mark.slow
def test_two_processes_train_the_projector_over_a_trainable_table(tmp_path):
    """Their mode 1 (a loaded table, trained) and the MLP projector over two processes: the same weights on both."""
    save_table(tmp_path / "table.safetensors", torch.randn(K, D))
    args = train_args(tmp_path, "--max-steps", "3", "--eval-data", "--output-dir", str(tmp_path / "ddp"),
                      "--init-table", str(tmp_path / "table.safetensors"))
    write_config(tmp_path / "config", bridge_type="lc-mlp", bridge_config={"hidden_size": 16}, table_dim=D,
                 freeze_table=False)  # over train_args' tiny config
    table = load_table(tmp_path / "table.safetensors")[0]
    lines = run_two_processes(args)
    assert lines[0][7] == lines[1][7]
    trained = saved_weights(tmp_path / "ddp" / "model")["quantizer.embedding.weight"]
    assert trained.shape == (K, D) and not torch.equal(trained, table)
