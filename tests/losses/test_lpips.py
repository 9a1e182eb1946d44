import pytest
import torch

from fvq_hf.losses.lpips import LPIPS, find_lpips_weights

from ..helpers import write_lpips_weights


def test_lpips_from_files(tmp_path):
    vgg, linear = write_lpips_weights(tmp_path)
    lpips = LPIPS.from_files(vgg, linear)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(lpips(x, x), torch.zeros(2))
    d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert not any(p.requires_grad for p in lpips.parameters())
    y.requires_grad_(True)
    lpips(x, y).sum().backward()
    assert y.grad.abs().sum() > 0


def test_find_weights_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("FVQ_LPIPS_VGG", raising=False)
    monkeypatch.delenv("FVQ_LPIPS_LINEAR", raising=False)
    vgg, linear, note = find_lpips_weights()
    assert vgg is None and linear is None
    assert "VGG16 weights" in note and "LPIPS linear heads" in note
    real_vgg, real_linear = write_lpips_weights(tmp_path)
    monkeypatch.setenv("FVQ_LPIPS_VGG", str(real_vgg))
    monkeypatch.setenv("FVQ_LPIPS_LINEAR", str(real_linear))
    assert find_lpips_weights() == (real_vgg, real_linear, "")


def test_wrong_weight_files(tmp_path):
    vgg, linear = write_lpips_weights(tmp_path)
    with pytest.raises(ValueError, match="not torchvision VGG16"):
        LPIPS.from_files(linear, linear)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth"):
        LPIPS.from_files(tmp_path / "junk.pth", linear)


def test_head_dropout_is_taming_s_training_mode():
    """`dropout` drops that share of the squared feature differences before the heads and rescales the rest (their
    `Dropout()` in training mode), drawing from torch's generator; 0 is the metric."""
    from ..helpers import seeded_lpips

    lpips = seeded_lpips(0)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(lpips(x, y, 0.0), lpips(x, y))
    torch.manual_seed(0)
    first = lpips(x, y, 0.5)
    torch.manual_seed(0)
    assert torch.equal(lpips(x, y, 0.5), first) and not torch.allclose(first, lpips(x, y))
    torch.manual_seed(1)
    assert not torch.equal(lpips(x, y, 0.5), first)
