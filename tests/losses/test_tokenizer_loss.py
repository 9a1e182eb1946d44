import pytest
import torch

from fvq_hf.losses import PatchGANDiscriminator, TokenizerLoss


def _inputs():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    recon = (images + 0.1 * torch.randn_like(images)).requires_grad_(True)
    return images, recon, torch.tensor(0.3), torch.tensor(0.05)


def test_generator_loss_before_the_gan_starts():
    images, recon, cb, commit = _inputs()
    loss_fn = TokenizerLoss(disc_start=10)
    loss, logs = loss_fn.generator_loss(images, recon, cb, commit, step=8, discriminator=PatchGANDiscriminator())
    expected = (recon - images).pow(2).mean() + 0.35
    torch.testing.assert_close(loss, expected)
    assert "loss/generator_gan" not in logs and "loss/perceptual" not in logs


def test_the_gan_starts_where_the_released_loops_start_it():
    # Their loops call the loss with global_step = step + 1 and switch the GAN on at global_step >= disc_start.
    loss_fn = TokenizerLoss(disc_start=10)
    assert [loss_fn.gan_active(step) for step in (8, 9, 10)] == [False, True, True]
    assert not TokenizerLoss(disc_start=0, disc_weight=0.0).gan_active(5)


def test_gan_term_trains_the_generator_only():
    images, recon, cb, commit = _inputs()
    disc = PatchGANDiscriminator()
    loss, logs = TokenizerLoss(disc_start=0).generator_loss(images, recon, cb, commit, step=0, discriminator=disc)
    loss.backward()
    assert "loss/generator_gan" in logs and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())


def test_hinge_discriminator_loss():
    images, recon, _, _ = _inputs()

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1, 2, 2), 0.5) + 0 * x.mean()

    loss, logs = TokenizerLoss().discriminator_loss(images, recon, Constant())
    # 0.5 * (relu(1 - 0.5) + relu(1 + 0.5)) = 1.0
    assert loss.item() == pytest.approx(1.0)
    assert logs["disc/logits_real"] == pytest.approx(0.5)


def test_patchgan_shape():
    assert PatchGANDiscriminator()(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 6, 6)


def test_bad_weights():
    with pytest.raises(ValueError):
        TokenizerLoss(disc_weight=-1.0)


def test_l1_reconstruction_is_the_mean_absolute_error():
    images, recon, cb, commit = _inputs()
    loss, logs = TokenizerLoss(reconstruction_loss="l1").generator_loss(images, recon, cb, commit, step=0)
    torch.testing.assert_close(loss, (recon - images).abs().mean() + 0.35)
    with pytest.raises(ValueError, match="reconstruction_loss 'l3': choose one of l2, l1"):
        TokenizerLoss(reconstruction_loss="l3")


def test_the_adaptive_gan_weight_is_tamings():
    """VQGAN-LC's (taming's) `calculate_adaptive_weight`: |grad nll| / (|grad G| + 1e-4) at the decoder's last
    weight, clamped to [0, 1e4], detached, times rate_d; nll = L1 + perceptual."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    last = torch.nn.Conv2d(4, 3, 3, padding=1)
    features = torch.randn(2, 4, 32, 32)
    disc = PatchGANDiscriminator()
    loss_fn = TokenizerLoss(disc_start=0, disc_weight=0.1, reconstruction_loss="l1", disc_adaptive=True)
    recon = last(features)
    loss, logs = loss_fn.generator_loss(images, recon, torch.tensor(0.0), torch.tensor(0.0), step=0,
                                        discriminator=disc, last_layer=last.weight)
    recon = last(features)  # theirs, written out, on the same graph
    nll, g = (recon - images).abs().mean(), -disc(recon).mean()
    ratio = torch.autograd.grad(nll, last.weight, retain_graph=True)[0].norm() / (
        torch.autograd.grad(g, last.weight, retain_graph=True)[0].norm() + 1e-4)
    weight = torch.clamp(ratio, 0.0, 1e4).detach() * 0.1
    assert logs["loss/disc_weight"] == pytest.approx(float(weight), rel=1e-5)
    torch.testing.assert_close(loss, nll + weight * g)
    assert logs["loss/disc_weight"] != pytest.approx(0.1)  # not the fixed weight
    with pytest.raises(ValueError, match="needs the decoder's last layer"):
        loss_fn.generator_loss(images, last(features), torch.tensor(0.0), torch.tensor(0.0), step=0, discriminator=disc)
