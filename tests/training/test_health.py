"""Training health warnings, each triggered by a constructed history (and silent on a healthy one)."""

from __future__ import annotations

import numpy as np

from pipelines.training.health import HealthMonitor, output_stats, phase_ranges


def gan_row(step, d, adv):
    return {"step": step, "phase": "gan", "loss/total_d": d, "loss/g_adv": adv}


def kinds(found):
    return [k for k, _ in found]


def test_discriminator_collapse_warns_once_and_rearms():
    m = HealthMonitor()
    history = [gan_row(s, d, a) for s, d, a in [(10, 1.0, 1.0), (20, 0.9, 1.1), (30, 1.1, 0.9)]]  # the early values
    history += [gan_row(40 + 10 * i, 0.02, 3.0) for i in range(4)]  # D near 0, G's adversarial loss x3
    found = [f for row in history for f in m.observe_losses(row)]
    assert kinds(found) == ["d_collapse"]
    assert "step 60" in found[0][1] and "discriminator has collapsed" in found[0][1]
    assert m.observe_losses(gan_row(90, 1.0, 1.0)) == []  # recovered: the condition clears...
    again = [f for s in (100, 110, 120) for f in m.observe_losses(gan_row(s, 0.01, 4.0))]
    assert kinds(again) == ["d_collapse"]  # ...and a new collapse is said again


def test_a_healthy_or_init_phase_history_says_nothing():
    m = HealthMonitor()
    rows = [{"step": s, "phase": "init", "loss/total_g_init": 0.1} for s in (10, 20)]
    rows += [gan_row(30 + 10 * i, 1.0 - 0.02 * i, 1.0 + 0.01 * i) for i in range(20)]
    assert [f for r in rows for f in m.observe_losses(r)] == []
    # D low but G's adversarial loss not climbing: a strong D is not yet a collapse
    m2 = HealthMonitor()
    rows = [gan_row(s, 1.0, 1.0) for s in (10, 20, 30)] + [gan_row(40 + i, 0.05, 1.0) for i in range(5)]
    assert [f for r in rows for f in m2.observe_losses(r)] == []


def test_black_flat_and_saturated_outputs():
    rng = np.random.default_rng(0)
    photo_like = rng.integers(30, 220, (2, 32, 32, 3), dtype=np.uint8)
    assert HealthMonitor().observe_eval(5, output_stats(photo_like), 0.8) == []
    black = np.full((2, 32, 32, 3), 3, np.uint8)
    assert kinds(HealthMonitor().observe_eval(5, output_stats(black), 0.0)) == ["black"]
    flat = np.full((2, 32, 32, 3), 120, np.uint8)
    assert kinds(HealthMonitor().observe_eval(5, output_stats(flat), 0.0)) == ["flat"]
    clipped = np.where(rng.random((2, 32, 32, 3)) < 0.5, 0, 255).astype(np.uint8)
    assert kinds(HealthMonitor().observe_eval(5, output_stats(clipped), 0.5)) == ["saturated"]


def test_a_one_colour_output_is_flat_whatever_its_colour():
    blue = np.empty((2, 32, 32, 3), np.uint8)
    blue[..., :] = (40, 120, 230)  # the channels differ by 190 levels; the image has no contrast
    assert output_stats(blue)["std"] == 0.0
    assert kinds(HealthMonitor().observe_eval(5, output_stats(blue), 0.0, phase="init")) == ["flat"]


def test_an_unfinished_init_phase_and_a_lost_photo_are_said():
    stats = {"mean": 120.0, "std": 50.0, "saturated": 0.0}
    m = HealthMonitor()
    assert m.observe_eval(10, stats, 0.05, phase="init") == []  # mid-phase: still learning
    found = m.observe_eval(20, stats, 0.12, phase="init", phase_ends=True)
    assert kinds(found) == ["init_unfinished"] and "step 20" in found[0][1] and "--init-epochs" in found[0][1]
    assert HealthMonitor().observe_eval(20, stats, 0.5, phase="init", phase_ends=True) == []
    lost = m.observe_eval(60, stats, 0.01, phase="gan")
    assert kinds(lost) == ["content_lost"] and "0.01" in lost[0][1]
    assert m.observe_eval(70, stats, 0.02, phase="gan") == []  # said once
    assert m.observe_eval(80, stats, 0.4, phase="gan") == []  # recovered...
    assert kinds(m.observe_eval(90, stats, 0.03, phase="gan")) == ["content_lost"]  # ...and lost again


def test_content_score_falling_steadily():
    m = HealthMonitor()
    stats = {"mean": 120.0, "std": 50.0, "saturated": 0.0}
    said = [k for step, c in enumerate([0.80, 0.82, 0.78, 0.74, 0.69]) for k in kinds(m.observe_eval(step, stats, c))]
    assert said == ["content_falling"]
    m = HealthMonitor()  # small wobbles around a level are not a fall
    said = [k for step, c in enumerate([0.80, 0.79, 0.785, 0.78, 0.775]) for k in kinds(m.observe_eval(step, stats, c))]
    assert said == []


def test_state_round_trip_keeps_what_a_resumed_run_needs():
    m = HealthMonitor()
    for row in [gan_row(s, 1.0, 1.0) for s in (10, 20, 30)] + [gan_row(40, 0.01, 3.0), gan_row(50, 0.01, 3.0)]:
        m.observe_losses(row)
    resumed = HealthMonitor()
    resumed.load_state(m.state())
    assert kinds(resumed.observe_losses(gan_row(60, 0.01, 3.0))) == ["d_collapse"]  # the third low row, as straight


def test_phase_ranges():
    r = phase_ranges([("init", 2), ("gan", 10)], steps_per_epoch=5, total_steps=60)
    assert r == [{"phase": "init", "epochs": 2, "first": 1, "last": 10, "runs": True, "complete": True},
                 {"phase": "gan", "epochs": 10, "first": 11, "last": 60, "runs": True, "complete": True}]
    cut = phase_ranges([("init", 2), ("gan", 10)], steps_per_epoch=5, total_steps=30)
    assert cut[1] == {"phase": "gan", "epochs": 10, "first": 11, "last": 30, "runs": True, "complete": False}
    short = phase_ranges([("init", 2), ("gan", 10)], steps_per_epoch=5, total_steps=8)
    assert short[0]["last"] == 8 and short[1]["runs"] is False


def test_white_paper_is_not_saturation_and_a_colorizer_that_ignores_its_reference_is_said():
    rng = np.random.default_rng(0)
    page = np.full((4, 32, 32, 3), 255, np.uint8)
    page[:, 8:24, 8:24] = rng.integers(40, 200, (4, 16, 16, 3))  # mostly white paper, like the targets
    stats = output_stats(page)
    assert stats["saturated"] > 0.5
    assert HealthMonitor().observe_eval(5, {**stats, "target_saturated": stats["saturated"]}, 0.8) == []

    paper = {**stats, "target_saturated": stats["saturated"]}
    m = HealthMonitor()
    ignoring = {"ref_tint": 0.01, "ref_spread": 0.5}
    assert m.observe_eval(5, paper, 0.8, ignoring) == []  # the first evaluation is a grace period
    assert set(kinds(m.observe_eval(10, paper, 0.8, ignoring))) == {"reference_ignored", "outputs_alike"}
    assert m.observe_eval(15, paper, 0.8, ignoring) == []  # said once
    following = HealthMonitor()
    for step in (5, 10, 15):
        assert following.observe_eval(step, paper, 0.8, {"ref_tint": 0.4, "ref_spread": 15.0}) == []
    restored = HealthMonitor()
    restored.load_state(m.state())
    assert restored.observe_eval(20, paper, 0.8, ignoring) == []  # still active after a resume
