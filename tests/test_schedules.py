"""Learning-rate schedules at their boundaries: the paper's /10 steps, warm-up end, cosine end, one-cycle floor."""

import keras
import numpy as np
import pytest

from csae_tf.config import FitConfig
from csae_tf.schedules import LearningRate, build_optimizer


def rates(schedule, steps) -> list[float]:
    return [float(schedule(step)) for step in steps]


def optimizer_rate(optimizer, step) -> float:
    """The learning rate the optimizer applies at `step` (its schedule evaluated at its iteration count)."""
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_step_schedule_divides_by_10_exactly_at_each_boundary():
    schedule = LearningRate("step", 0.1, total_steps=120, step_every=30)
    assert rates(schedule, [0, 29, 30, 59, 60, 89, 90, 119]) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4], rel=1e-6)


def test_warmup_rises_linearly_and_ends_at_the_peak_where_the_schedule_starts():
    schedule = LearningRate("cosine", 0.2, total_steps=110, warmup_steps=10)
    assert rates(schedule, [0, 4, 9]) == pytest.approx([0.02, 0.1, 0.2], rel=1e-6)
    assert float(schedule(10)) == pytest.approx(0.2, rel=1e-6)  # the cosine's start: no jump at the end of warm-up
    assert float(schedule(11)) < 0.2


def test_cosine_reaches_zero_at_total_steps_and_stays_there():
    schedule = LearningRate("cosine", 0.1, total_steps=100)
    assert float(schedule(50)) == pytest.approx(0.05, rel=1e-5)  # half-way: half the peak
    assert rates(schedule, [100, 150]) == pytest.approx([0.0, 0.0], abs=1e-9)


def test_onecycle_falls_to_a_floor_of_peak_over_1000():
    schedule = LearningRate("onecycle", 0.1, total_steps=100, warmup_steps=20)
    assert float(schedule(19)) == pytest.approx(0.1, rel=1e-6)
    assert rates(schedule, [100, 500]) == pytest.approx([1e-4, 1e-4], rel=1e-5)
    assert min(rates(schedule, range(0, 101))) == pytest.approx(1e-4, rel=1e-5)


def test_constant_schedule_keeps_the_peak():
    assert rates(LearningRate("constant", 0.3, total_steps=10), [0, 5, 100]) == pytest.approx([0.3] * 3)


def test_optimizer_of_a_config_steps_every_lr_step_epochs_epochs_of_steps():
    cfg = FitConfig(schedule="step", lr=0.1, lr_step_epochs=3, epochs=9, warmup_epochs=0.5)
    optimizer = build_optimizer(cfg, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == pytest.approx(0.9)
    # warm-up 0.5 epochs = 5 steps, /10 after 3 epochs = 30 steps: read where the optimizer reads it
    assert [optimizer_rate(optimizer, step) for step in (0, 4, 29, 30)] == pytest.approx([0.02, 0.1, 0.1, 0.01],
                                                                                          rel=1e-6)


def test_adam_config_gets_adam_with_the_schedule():
    optimizer = build_optimizer(FitConfig(optimizer="adam", lr=1e-3, schedule="constant"), steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert np.isclose(optimizer_rate(optimizer, 7), 1e-3)
