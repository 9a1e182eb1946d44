import math

import pytest

from fvq_hf.training.schedule import annealing_factor


def test_lin_schedule_as_released():
    total, warmup = 1001, 100
    assert annealing_factor(0, total, warmup) == pytest.approx(0.005)
    assert annealing_factor(50, total, warmup) == pytest.approx(0.005 + 0.995 * 0.5)
    assert annealing_factor(100, total, warmup) == 1.0
    # constant for the first 30% of the 900 post-warmup steps
    assert annealing_factor(100 + 269, total, warmup) == 1.0
    # then linear down to 1% at the last step
    assert annealing_factor(total - 1, total, warmup) == pytest.approx(0.01)
    mid = 100 + 270 + 315  # halfway through the decay
    assert annealing_factor(mid, total, warmup) == pytest.approx(0.01 + 0.99 * 0.5, abs=2e-3)
    values = [annealing_factor(s, total, warmup) for s in range(100 + 270, total)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_const_stays_at_peak_and_cos_decays_on_a_half_cosine():
    assert annealing_factor(999, 1000, 10, "const") == 1.0
    assert annealing_factor(999, 1000, 10, "cos") == pytest.approx(0.01)
    progress = 0.3 + 0.7 * 0.5  # halfway through the cosine part
    step = round(10 + progress * 989)
    expected = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * ((step - 10) / 989 - 0.3) / 0.7))
    assert annealing_factor(step, 1000, 10, "cos") == pytest.approx(expected)


def test_no_warmup_starts_at_peak():
    assert annealing_factor(0, 10, 0) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [dict(schedule="step"), dict(total_steps=0), dict(warmup_steps=20), dict(constant_fraction=1.0)],
)
def test_bad_schedule_arguments_are_refused(kwargs):
    args = {**dict(step=0, total_steps=10, warmup_steps=2), **kwargs}
    with pytest.raises(ValueError):
        annealing_factor(**args)


def test_warmup_cosine_starts_at_zero_and_ends_at_zero_one_step_after_the_run():
    """VQGAN-LC's schedule (their util/lr_sched.py with min_lr 0): no floor, no constant part, warmup from 0."""
    total, warmup = 100, 10
    assert annealing_factor(0, total, warmup, "warmup-cosine") == 0.0
    assert annealing_factor(5, total, warmup, "warmup-cosine") == 0.5
    assert annealing_factor(warmup, total, warmup, "warmup-cosine") == 1.0
    assert annealing_factor(55, total, warmup, "warmup-cosine") == pytest.approx(0.5)
    assert annealing_factor(total - 1, total, warmup, "warmup-cosine") == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert annealing_factor(total, total, warmup, "warmup-cosine") == pytest.approx(0.0, abs=1e-15)
    assert annealing_factor(0, total, 0, "warmup-cosine") == 1.0
