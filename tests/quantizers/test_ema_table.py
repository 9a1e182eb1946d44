"""`table_update="ema"` (`fvq_hf/quantizers/ema_table.py`): the table written by VQGAN-LC's EMA rule (their
`models_vq.py`, `--quantizer_type ema`), only in training, summed over processes, saved and resumed with the
model; where it cannot apply, a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.quantizers import quantizer_class
from fvq_hf.training import train

from ..helpers import TINY_CONFIG, run_in_two_processes, write_config
from ..training.runs import saved_weights, tiny_config, with_changes

DECAY, EPS = 0.99, 1e-5


def their_update(table, cluster_size, embed_avg, z, ids):
    """Their `cluster_size_ema_update`, `embed_avg_ema_update` and `weight_update`, written out."""
    encodings = torch.nn.functional.one_hot(ids, table.shape[0]).float()
    cluster_size = cluster_size * DECAY + encodings.sum(0) * (1 - DECAY)
    embed_avg = embed_avg * DECAY + (encodings.T @ z) * (1 - DECAY)
    n = cluster_size.sum()
    smoothed = (cluster_size + EPS) / (n + table.shape[0] * EPS) * n
    return embed_avg / smoothed.unsqueeze(1), cluster_size, embed_avg


def test_a_training_forward_updates_the_table_as_their_rule_and_an_evaluation_does_not():
    torch.manual_seed(0)
    quantizer = quantizer_class("vq").build(16, 4, {}, table_update="ema").train()
    table, size, avg = quantizer.embedding.weight.detach().clone(), torch.zeros(16), None
    avg = table.clone()
    for step in range(3):
        z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(step)) * 0.1
        out = quantizer(z)
        flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
        ids = torch.cdist(flat, table).argmin(1)  # with the table before this step's update
        assert torch.equal(out.indices.reshape(-1), ids)
        torch.testing.assert_close(out.latents.detach(), table[ids].view(2, 3, 3, 4).permute(0, 3, 1, 2))
        table, size, avg = their_update(table, size, avg, flat, ids)
        torch.testing.assert_close(quantizer.embedding.weight, table, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(quantizer.ema.cluster_size, size)
    assert out.codebook_loss == 0 and out.commitment_loss > 0  # theirs: mse(sg(z_q), z) alone
    assert not quantizer.embedding.weight.requires_grad
    before = quantizer.embedding.weight.clone()
    quantizer.eval()(z)
    assert torch.equal(quantizer.embedding.weight, before)


def test_a_residual_table_averages_the_residual_of_every_level():
    torch.manual_seed(0)
    quantizer = quantizer_class("residual").build(16, 4, {"depth": 2}, table_update="ema").train()
    table = quantizer.embedding.weight.detach().clone()
    z = torch.randn(1, 4, 2, 2) * 0.1
    out = quantizer(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    first, second = out.indices.reshape(-1, 2).unbind(1)
    vectors = torch.cat([flat, flat - table[first]])
    expected, _, _ = their_update(table, torch.zeros(16), table.clone(), vectors, torch.cat([first, second]))
    torch.testing.assert_close(quantizer.embedding.weight, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [
    dict(bridge_type="vqbridge"),
    dict(bridge_type="none", bridge_config=None, freeze_table=True),
    dict(bridge_type="none", bridge_config=None, quantizer_type="multiscale", quantizer_config={"scales": [1, 2, 4, 8]}),
    dict(bridge_type="none", bridge_config=None, table_ema_decay=1.0),
])
def test_where_an_ema_table_cannot_apply_it_is_refused(bad):
    with pytest.raises(ValueError, match="table_update='ema'|table_ema_decay must lie in"):
        FVQModel(**{**TINY_CONFIG, **bad, "table_update": "ema"})


@pytest.mark.slow
@pytest.mark.parametrize("quantizer_type", ["vq", "residual"])
def test_two_processes_hold_the_table_of_the_whole_batch(quantizer_type, tmp_path):
    """Each process quantizes half of the batch; the counts and sums are all-reduced, so both hold the table that
    one process gives on the whole batch (a per-process EMA, the usual bug, would give two different tables)."""
    run_in_two_processes(Path(__file__).with_name("ema_worker.py"), [quantizer_type, str(tmp_path)])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    torch.manual_seed(0)
    one = quantizer_class(quantizer_type).build(64, 4, {"depth": 2} if quantizer_type == "residual" else {},
                                                table_update="ema").train()
    latents = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.05
    for _ in range(2):
        one(latents)
    for rank in ranks:
        torch.testing.assert_close(rank["table"], one.embedding.weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rank["cluster_size"], one.ema.cluster_size)
    assert torch.equal(ranks[0]["table"], ranks[1]["table"])


def test_an_ema_table_trains_saves_and_resumes_exactly(tmp_path):
    config = write_config(tmp_path / "ema", bridge_type="none", bridge_config=None, table_update="ema")
    base = tiny_config(tmp_path, max_steps=4, checkpoint_every=100, config=str(config))
    train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=2))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "resumed" / "model")
    assert {"quantizer.ema.cluster_size", "quantizer.ema.embed_sum"} <= set(a)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert a["quantizer.ema.cluster_size"].sum() > 0
