import json

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf.training.ema import averaged_weights, make_ema
from fvq_hf.training.trainer import train

from ..helpers import make_tiny_model
from .runs import saved_weights, tiny_config, with_changes

# diffusers' warmup decay (1 + t) / (10 + t) passes 0.2 at t = 2: from the third update on, the decay given is the one
# used (a decay that the warmup never reaches, as 0.6 in 3 steps, cannot tell a wrong --ema-decay from the right one).
DECAY = 0.2


def test_averaged_weights_swap_in_and_out():
    model = make_tiny_model()
    ema = make_ema(model, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.step(model.parameters())  # the first update copies (decay 0 at step 1)
    ema.step(model.parameters())
    with averaged_weights(ema, model):
        assert all(torch.equal(p, s) for p, s in zip(model.parameters(), ema.shadow_params))
    assert all(torch.equal(v, before[k] + 1) for k, v in model.named_parameters())
    assert make_ema(model, None) is None


def test_the_final_model_is_the_average_of_each_steps_weights_and_the_raw_ones_are_beside_it(tmp_path):
    """The EMA, recomputed here from the weights checkpointed after each step (diffusers' decay rule); the decay
    given binds at steps 3 and 4."""
    base = tiny_config(tmp_path, max_steps=4, eval_data=[str(tmp_path / "images")], checkpoint_every=1,
                       checkpoints_total_limit=5)
    plain = tmp_path / "plain"
    train(with_changes(base, output_dir=str(plain)))
    steps = [load_file(p / "model.safetensors") for p in sorted((plain / "checkpoints").iterdir())]
    expected = dict(steps[0])
    decays = []
    for t, weights in enumerate(steps[1:], start=2):
        decays.append(min(DECAY, t / (9 + t)))  # EMAModel.get_decay(t): (1 + (t - 1)) / (10 + (t - 1))
        expected = {k: decays[-1] * expected[k] + (1 - decays[-1]) * weights[k] for k in weights}
    assert decays[-2:] == [DECAY, DECAY]  # the cap binds

    out = tmp_path / "ema"
    result = train(with_changes(base, output_dir=str(out), ema_decay=DECAY))
    assert result.ema.cur_decay_value == DECAY
    averaged, raw = saved_weights(out / "model"), saved_weights(out / "model-raw")
    trainable = [k for k, v in result.model.named_parameters() if v.requires_grad]
    for key in trainable:
        torch.testing.assert_close(averaged[key], expected[key], rtol=1e-5, atol=1e-6)
        assert torch.equal(raw[key], steps[-1][key])  # EMA does not change training
    assert any(not torch.equal(averaged[k], raw[k]) for k in trainable)
    assert "exponential moving average" in (out / "model" / "README.md").read_text()
    assert "raw training weights" in (out / "model-raw" / "README.md").read_text()
    assert (out / "model-folded" / "config.json").exists()
    ema_eval = json.loads((out / "eval.json").read_text())
    raw_eval = json.loads((out / "eval-raw.json").read_text())
    assert ema_eval.keys() == raw_eval.keys() and result.eval_raw == raw_eval
    plain_eval = json.loads((plain / "eval.json").read_text())
    data = str(tmp_path / "images")
    assert raw_eval[data]["psnr"] == pytest.approx(plain_eval[data]["psnr"], rel=1e-9)


@pytest.mark.parametrize("warmup", [True, False])
def test_a_resumed_run_continues_the_average_exactly(warmup, tmp_path):
    # Stopped after the cap has bound (step 3) and resumed: the saved state carries the step count of the decay.
    base = tiny_config(tmp_path, max_steps=5, ema_decay=DECAY, ema_warmup=warmup)
    train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=3))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    for folder in ("model", "model-raw"):
        a, b = saved_weights(tmp_path / "straight" / folder), saved_weights(tmp_path / "resumed" / folder)
        assert all(torch.equal(a[key], b[key]) for key in a), folder


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.1])
def test_an_ema_decay_outside_0_1_is_refused(value, tmp_path):
    with pytest.raises(ValueError, match="--ema-decay must lie in"):
        tiny_config(tmp_path, ema_decay=value)


def test_no_ema_warmup_is_the_authors_average_from_the_first_step(tmp_path):
    """`--ema-decay 0.9999 --no-ema-warmup`: their utils/ema.py, `ema.mul_(d).add_(param, alpha=1 - d)` after every
    step on an average that starts as the initial weights, recomputed here from each step's checkpointed weights."""
    from accelerate.utils import set_seed

    from fvq_hf import FVQModel

    decay = 0.9999
    base = tiny_config(tmp_path, max_steps=3, checkpoint_every=1, checkpoints_total_limit=5)
    train(with_changes(base, output_dir=str(tmp_path / "plain")))
    steps = [load_file(p / "model.safetensors") for p in sorted((tmp_path / "plain" / "checkpoints").iterdir())]
    set_seed(base.loop.seed)  # the trainer's initial weights: seeded, then built from the config
    theirs = {k: v.clone() for k, v in FVQModel.from_config(FVQModel.load_config(base.config)).state_dict().items()}
    for weights in steps:
        for key, average in theirs.items():
            average.mul_(decay).add_(weights[key], alpha=1 - decay)
    result = train(with_changes(base, output_dir=str(tmp_path / "ema"), ema_decay=decay, ema_warmup=False))
    assert result.ema.cur_decay_value == decay
    averaged = saved_weights(tmp_path / "ema" / "model")
    trainable = [k for k, v in result.model.named_parameters() if v.requires_grad]
    moved = 0
    for key in trainable:
        torch.testing.assert_close(averaged[key], theirs[key], rtol=0, atol=1e-6)
        moved += not torch.equal(steps[-1][key], steps[0][key])
    assert moved  # training moved the weights: diffusers' warmup (the first step copies them) would be far off
    assert "from the first step, without warmup" in (tmp_path / "ema" / "model" / "README.md").read_text()
