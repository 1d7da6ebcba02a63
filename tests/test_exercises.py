"""Each exercise of docs/exercises.md, run as python -m planarflow exercises runs it, shows what the page says."""

import numpy as np
import pytest

import planarflow as pf
from conftest import grad_errors
from planarflow import reference
from planarflow.lab import exercises as ex


def test_exercise_1_the_gradient_checks_and_a_flipped_sign_breaks_it():
    assert ex.gradient_check() < 1e-8
    with ex.edited(planar_backward=ex.flipped_logdet_sign()):
        assert ex.gradient_check() > 1e-2
    assert ex.gradient_check() < 1e-8                           # the edit is undone


def test_exercise_2_the_unconstrained_layer_has_a_correct_gradient():
    rng = np.random.default_rng(4)
    u, w = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    gu_hat, gsp = rng.standard_normal((3, 2)), rng.standard_normal(3)
    du, dw = ex.u_hat_backward_free(gu_hat, gsp, ex.u_hat_forward_free(u, w)[2])

    def L(u_, w_):
        uh, sp, _ = ex.u_hat_forward_free(u_, w_)
        return np.sum(gu_hat * uh) + np.sum(gsp * sp)

    assert pf.rel_error(du, pf.numerical_gradient(lambda x: L(x, w), u.copy())) <= 1e-7
    assert pf.rel_error(dw, pf.numerical_gradient(lambda x: L(u, x), w.copy())) <= 1e-7
    # and the whole loss with it, through planarflow's reverse_kl (which calls reference.py)
    params = pf.init_params(3, 2, rng=1, u_scale=0.5)
    z0 = rng.standard_normal((64, 2))
    target = pf.get_target("U1")
    with ex.without_constraint():
        assert np.min(1.0 + np.sum(params["w"] * params["u"], axis=1)) > 0      # every D > 0 here
        _, grads = pf.reverse_kl(params, z0, target)
        np.testing.assert_array_equal(reference.u_hat_forward(params["u"], params["w"])[0], params["u"])
        errors = grad_errors(lambda p: pf.reverse_kl(p, z0, target)[0], params, grads)
    assert max(errors.values()) <= 1e-6, errors


def test_exercise_2_without_the_constraint_most_runs_diverge_with_it_none():
    """docs/exercises.md: without the constraint at least 3 of the 10 runs stop with TrainingDiverged and
    those that finish have every wᵀû > −1; with it, none of the 10 diverge."""
    free = ex.train(constrained=False)
    assert sum(what == "diverged" for what, _ in free) >= 3
    assert all(value > -1.0 for what, value in free if what == "finished")
    held = ex.train(constrained=True)
    assert all(what == "finished" and value > -1.0 for what, value in held)


def test_exercise_3_annealing_keeps_both_lobes():
    """docs/exercises.md: without annealing 1 to 7 of the ten runs lose a lobe (KL ≈ log 2); with
    anneal_steps = 700 at most one does."""
    lost = lambda kls: sum(k > ex.LOBE_LOST for k in kls)
    without = ex.annealing(0)
    assert 1 <= lost(without) <= 7
    assert all(abs(k - np.log(2)) < 0.1 for k in without if k > ex.LOBE_LOST)   # a lost lobe costs log 2
    assert lost(ex.annealing(700)) <= 1


def test_exercise_4_without_the_wall_the_loss_falls_below_the_floor_and_the_flow_spreads():
    """docs/exercises.md: the loss falls at each mark and ends more than 0.4 nats below the boxed floor;
    98% of the samples span more than (−6, 6) in z₁."""
    losses, floor, (lo, hi) = ex.without_wall()
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < floor - 0.4
    assert lo < -6.0 and hi > 6.0


@pytest.mark.parametrize("name", ["planar_backward", "u_hat_forward"])
def test_edited_restores_reference_even_after_an_error(name):
    original = getattr(reference, name)
    with pytest.raises(KeyError):
        with ex.edited(**{name: lambda *a: None}):
            raise KeyError
    assert getattr(reference, name) is original
