import pytest
import torch

from fvq_hf.bridges import VQBridge, codebook_grid


@pytest.mark.parametrize(
    ("patch", "codebook_size", "grid", "tokens", "params"),
    [
        # The published QBridge-L sizes (4 heads x 64, depth 2; FVQ_NOTES: ~3.2M at 16k, ~9.5M at 65k and 262k).
        (4, 16384, (128, 128), 1024, 3_153_664),
        (8, 65536, (256, 256), 1024, 9_457_408),
        (8, 262144, (512, 512), 4096, 9_457_408),
    ],
)
def test_the_published_bridges_have_their_released_sizes(patch, codebook_size, grid, tokens, params):
    with torch.device("meta"):
        bridge = VQBridge(codebook_size, 256, patch_size=patch, hidden_size=256, depth=2, num_heads=4)
    assert bridge.grid == grid
    assert (grid[0] // patch) * (grid[1] // patch) == tokens
    assert sum(t.numel() for t in bridge.parameters()) == params


def test_the_codebook_has_the_tables_shape_and_starts_at_zero():
    bridge = VQBridge(codebook_size=1024, code_dim=8, patch_size=4, hidden_size=32, num_heads=2)
    table = torch.randn(1024, 8)
    out = bridge(table)
    assert out.shape == (1024, 8)
    # The recover layer is zero-initialised, so every code starts at zero (as released).
    assert torch.count_nonzero(out) == 0


def _released_layout_forward(bridge: VQBridge, table: torch.Tensor) -> torch.Tensor:
    """The release's tensor layout, written with reshape/einsum: (K, d) -> (1, d, h, w) -> ... -> (K, d)."""
    k, d = table.shape
    h, w = bridge.grid
    p = bridge.config.patch_size
    x = table.permute(1, 0).reshape(1, d, h, w)
    x = bridge.patch_embed(x).flatten(2).transpose(1, 2)
    for block in bridge.blocks:
        x = block(x)
    x = bridge.proj_out(bridge.norm_out(x))
    x = x.reshape(1, h // p, w // p, p, p, d)
    x = torch.einsum("nhwpqc->nchpwq", x).reshape(1, d, h, w)
    return x.reshape(1, d, k).permute(0, 2, 1)[0]


@pytest.mark.parametrize(("k", "p"), [(256, 4), (2048, 4)])
def test_layout_matches_the_released_code_grid(k, p):
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=k, code_dim=3, patch_size=p, hidden_size=16, depth=1, num_heads=2)
    with torch.no_grad():
        bridge.proj_out.weight.normal_()
        bridge.proj_out.bias.normal_()
    table = torch.randn(k, 3)
    torch.testing.assert_close(bridge(table), _released_layout_forward(bridge, table))


@pytest.mark.parametrize(("k", "p", "grid"), [(1024, 4, (32, 32)), (2048, 4, (32, 64)), (8192, 8, (64, 128)),
                                             (48, 2, (6, 8))])
def test_non_square_codebooks_get_a_rectangular_grid(k, p, grid):
    assert codebook_grid(k, p) == grid
    bridge = VQBridge(codebook_size=k, code_dim=4, patch_size=p, hidden_size=16, depth=1, num_heads=2)
    assert bridge(torch.randn(k, 4)).shape == (k, 4)


def test_impossible_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VQBridge(codebook_size=1000, code_dim=4, patch_size=8)


@pytest.mark.parametrize("kwargs", [dict(hidden_size=30, num_heads=4), dict(depth=0), dict(mlp_ratio=0.0)])
def test_bad_bridge_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        VQBridge(codebook_size=256, code_dim=4, patch_size=4, **{"hidden_size": 32, **kwargs})


def test_gradient_reaches_every_code():
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=256, code_dim=8, patch_size=4, hidden_size=32, num_heads=2)
    with torch.no_grad():
        bridge.proj_out.weight.normal_(std=0.05)
    table = torch.randn(256, 8, requires_grad=True)
    bridge(table)[:3].sum().backward()  # a loss that touches three codes only
    assert (table.grad.abs().sum(dim=1) > 0).all()


def test_a_saved_bridge_loads_exactly(tmp_path):
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=256, code_dim=8, patch_size=4, hidden_size=32, num_heads=2)
    with torch.no_grad():
        bridge.proj_out.weight.normal_()
    bridge.save_pretrained(tmp_path)
    loaded = VQBridge.from_pretrained(tmp_path)
    table = torch.randn(256, 8)
    torch.testing.assert_close(loaded(table), bridge(table), rtol=0, atol=0)
