import pytest
import torch
from torch import nn

from fvq_hf.bridges import build_bridge
from fvq_hf.quantizers.vq import VectorQuantizer

from ..helpers import TINY_BRIDGES, make_tiny_model


def _quantizer(bridge_type="vqbridge", **kwargs):
    torch.manual_seed(0)
    bridge = build_bridge(bridge_type, 256, 8, TINY_BRIDGES.get(bridge_type))
    return VectorQuantizer(nn.Embedding(256, 8), bridge, **{"search_chunk_size": 50, **kwargs})


def test_forward_quantizes_to_codebook_entries():
    vq = _quantizer("none")
    z = torch.randn(2, 8, 3, 5)
    out = vq(z)
    assert out.latents.shape == (2, 8, 3, 5) and out.indices.shape == (2, 3, 5)
    assert out.indices.dtype == torch.long
    codes = vq.codebook()[out.indices]  # (B, h, w, d)
    torch.testing.assert_close(out.latents.permute(0, 2, 3, 1), codes)
    torch.testing.assert_close(vq.lookup(out.indices), out.latents)
    # Losses as released: codebook weight 1, commitment 0.25.
    mse = (out.latents - z).pow(2).mean()
    torch.testing.assert_close(out.codebook_loss, mse)
    torch.testing.assert_close(out.commitment_loss, 0.25 * mse)


def test_straight_through_gradient_reaches_the_input():
    vq = _quantizer("none")
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    weight = torch.randn(2, 8, 4, 4)
    (vq(z).latents * weight).sum().backward()
    torch.testing.assert_close(z.grad, weight)  # identity gradient through the STE


def _table_grad_rows(vq, z):
    out = vq(z)
    (out.codebook_loss + out.commitment_loss).backward()
    grad = vq.embedding.weight.grad
    return out, (grad.abs().sum(dim=1) > 0) if grad is not None else torch.zeros(256, dtype=torch.bool)


def test_vqbridge_gives_gradient_to_every_code_in_one_step():
    vq = _quantizer("vqbridge")
    with torch.no_grad():  # as after the first optimizer step: the zero-initialised recover layer has moved
        vq.bridge.proj_out.weight.normal_(std=0.05)
    z = torch.randn(1, 8, 2, 2)  # 4 tokens hit at most 4 of the 256 codes
    out, rows = _table_grad_rows(vq, z)
    not_hit = torch.ones(256, dtype=torch.bool)
    not_hit[out.indices.flatten()] = False
    assert rows[not_hit].all() and rows.all()  # the codes no token chose learn too


def test_plain_vq_gives_gradient_only_to_hit_codes():
    vq = _quantizer("none")
    z = torch.randn(1, 8, 2, 2)
    out, rows = _table_grad_rows(vq, z)
    assert set(rows.nonzero().flatten().tolist()) == set(out.indices.flatten().tolist())


@pytest.mark.parametrize("bridge_type", ["linear", "mlp"])
def test_baselines_freeze_the_table_and_train_the_projection(bridge_type):
    vq = _quantizer(bridge_type)
    assert not vq.embedding.weight.requires_grad
    out = vq(torch.randn(1, 8, 2, 2))
    out.codebook_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vq.bridge.parameters() if p.dim() == 2)


def test_l2_norm_normalises_codes_and_latents():
    vq = _quantizer("none", codebook_l2_norm=True)
    out = vq(torch.randn(2, 8, 3, 3) * 10)
    torch.testing.assert_close(vq.codebook().norm(dim=1), torch.ones(256))
    torch.testing.assert_close(out.latents.norm(dim=1), torch.ones(2, 3, 3))


def test_codebook_cache_is_invalidated_by_a_weight_change():
    vq = _quantizer("linear").eval()
    with torch.no_grad():
        first = vq.codebook()
        assert vq.codebook() is first  # cached in inference
        vq.bridge.linear.weight.mul_(2.0)
        assert not torch.equal(vq.codebook(), first)
    vq.train()
    assert vq.codebook() is not vq.codebook()  # never cached while training


def test_quantizer_runs_in_fp32_under_autocast():
    vq = _quantizer("vqbridge")
    z = torch.randn(1, 8, 2, 2, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert out.latents.dtype == torch.bfloat16 and out.codebook_loss.dtype == torch.float32


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (torch.tensor([[[0, 256]]]), r"\[0, 256\)"),
        (torch.tensor([[[-1, 3]]]), r"\[0, 256\)"),
        (torch.zeros(1, 2, 2, dtype=torch.float32), "integer"),
        (torch.zeros(4, dtype=torch.long), r"\(B, h, w\)"),
    ],
)
def test_lookup_rejects_bad_ids(indices, match):
    with pytest.raises(ValueError, match=match):
        _quantizer("none").lookup(indices)


@pytest.mark.parametrize("kwargs", [dict(commitment_weight=-1.0), dict(codebook_weight=-1.0), dict(search_chunk_size=0)])
def test_negative_loss_weights_and_a_zero_chunk_size_are_refused(kwargs):
    with pytest.raises(ValueError, match=">= 0 and search_chunk_size >= 1"):
        VectorQuantizer(nn.Embedding(256, 8), **kwargs)


def test_latents_of_another_width_are_refused_naming_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        _quantizer("none")(torch.randn(2, 7, 3, 3))


def test_l2_norm_with_a_vqbridge_is_refused():
    with pytest.raises(ValueError, match="VQBridge .* codebook_l2_norm=False"):
        _quantizer("vqbridge", codebook_l2_norm=True)


def test_one_token_id_check_for_every_caller():
    from fvq_hf.quantizers import check_token_ids

    check_token_ids(torch.tensor([0, 7]), 8)
    for bad in (torch.tensor([0.0]), torch.tensor([True])):
        with pytest.raises(TypeError, match="integer token ids"):
            check_token_ids(bad, 8)
        with pytest.raises(ValueError, match="integer token ids"):  # what lookup has always raised
            check_token_ids(bad, 8)
    with pytest.raises(ValueError, match=r"Token ids must lie in \[0, 8\); got ids from -1 to 8\. hint"):
        check_token_ids(torch.tensor([-1, 8]), 8, " hint")


def test_table_init_picks_how_the_table_starts():
    normal = make_tiny_model(bridge_type="dit", table_init="normal").quantizer.embedding.weight
    assert 0.9 < normal.std() < 1.1  # nn.Embedding's N(0, 1): what the authors' VAR variant keeps
    for table_init in ("auto", "uniform"):
        table = make_tiny_model(bridge_type="dit", table_init=table_init).quantizer.embedding.weight
        # uniform(-1/K, 1/K), K = 256: within the bound, with the standard deviation (1/K) / sqrt(3) of that law
        assert table.abs().max() <= 1 / 256 and table.std().item() == pytest.approx(1 / 256 / 3**0.5, rel=0.1)
    frozen = make_tiny_model(bridge_type="linear").quantizer.embedding.weight  # "auto": the bridge's own rule
    assert frozen.std() == pytest.approx(8 ** -0.5, rel=0.1)
    with pytest.raises(ValueError, match=r"table_init='zeros': choose one of \('auto', 'uniform', 'normal'\)"):
        make_tiny_model(table_init="zeros")
