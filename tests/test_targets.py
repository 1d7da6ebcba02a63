"""The Table 1 energies: values against the paper's formulas, analytic gradients, the box wall."""

import numpy as np
import pytest

from planarflow import get_target, numerical_gradient, rel_error
from planarflow import Gaussian

NAMES = ["U1", "U2", "U3", "U4"]


def paper_energy(name, z):
    """Table 1 written the naive way (fine at moderate z), as an independent reference."""
    z1, z2 = z[:, 0], z[:, 1]
    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        r = np.sqrt(z1 ** 2 + z2 ** 2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - np.log(
            np.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + np.exp(-0.5 * ((z1 + 2) / 0.6) ** 2))
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.35) ** 2) + np.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2))
    return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + np.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2))


@pytest.mark.parametrize("name", NAMES)
def test_energy_matches_the_papers_formula(name):
    z = np.random.default_rng(1).uniform(-3.5, 3.5, size=(500, 2))
    np.testing.assert_allclose(get_target(name, box=None).energy(z), paper_energy(name, z), rtol=1e-12, atol=1e-12)
    # the wall is zero inside the box (−4, 4)²
    np.testing.assert_array_equal(get_target(name).energy(z), get_target(name, box=None).energy(z))


@pytest.mark.parametrize("box", [None, 4.0, 1.5])
@pytest.mark.parametrize("name", NAMES)
def test_energy_gradient_matches_central_differences(name, box):
    # points inside and outside the box (the wall active for box = 1.5 and 4 at |z| > 4)
    z = np.random.default_rng(2).uniform(-5.5, 5.5, size=(40, 2))
    target = get_target(name, box=box)
    numeric = numerical_gradient(lambda x: np.sum(target.energy(x)), z.copy())
    assert rel_error(target.grad(z), numeric) <= 1e-7


def test_u1_gradient_is_finite_at_the_origin():
    g = get_target("U1").grad(np.zeros((1, 2)))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name", NAMES)
def test_energies_stay_finite_far_from_the_box(name):
    # log-sum-exp written stably: no exp overflow, no log(0), no inf
    z = np.array([[1e3, -1e3], [-1e3, 1e3], [50.0, -50.0], [0.0, 300.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):   # underflow to 0 is fine
        for box in [None, 4.0]:
            t = get_target(name, box=box)
            U, g = t.energy_and_grad(z)
            assert np.all(np.isfinite(U)) and np.all(np.isfinite(g))


def test_wall_makes_the_energy_grow_outside_the_box():
    t = get_target("U2")
    inside = t.energy(np.array([[3.9, 0.0]]))[0]
    outside = t.energy(np.array([[4.4, 0.0]]))[0]
    # ½ (0.4/0.2)² = 2 nats of wall at 0.4 beyond the box, on top of U2 itself
    expected = get_target("U2", box=None).energy(np.array([[4.4, 0.0]]))[0] + 2.0
    assert outside == pytest.approx(expected, rel=1e-12)
    assert outside > inside


def test_get_target_rejects_unknown_names_and_bad_boxes():
    with pytest.raises(ValueError, match="name"):
        get_target("U9")
    with pytest.raises(ValueError, match="box"):
        get_target("U1", box=-1.0)
    with pytest.raises(ValueError, match="wall"):
        get_target("U1", wall=0.0)


def test_energy_rejects_points_of_the_wrong_shape():
    with pytest.raises(ValueError, match="z"):
        get_target("U1").energy(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="z"):
        get_target("U1").energy(np.zeros(2))


def test_gaussian_target_energy_gradient_and_log_z():
    t = Gaussian([1.0, -2.0, 0.5], [0.5, 2.0, 1.0])
    z = np.random.default_rng(3).standard_normal((30, 3))
    assert rel_error(t.grad(z), numerical_gradient(lambda x: np.sum(t.energy(x)), z.copy())) <= 1e-7
    assert t.log_z == pytest.approx(np.log(0.5 * 2.0 * 1.0) + 1.5 * np.log(2 * np.pi), rel=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_the_wall_added_to_the_rows_outside_only_equals_it_added_everywhere(name):
    """paper_energy adds the wall to the rows outside the box only; since the wall is exactly 0
    inside, that is bit for bit U + wall(z) over every row (rows with one or both coordinates
    outside, a point on the box's edge, and a layout NumPy did not allocate itself)."""
    from planarflow import targets
    rng = np.random.default_rng(3)
    z = rng.standard_normal((500, 2)) * 2.5
    z[:3] = [[4.0, 0.0], [4.5, -5.0], [-0.3, -4.2]]
    for points in (z, np.asfortranarray(z), z[::2]):
        U, g = targets.paper_energy(name, points)
        U0, g0 = targets.ENERGIES[name](points)
        Uw, gw = targets.box_wall(points, 4.0, 0.2)
        assert np.array_equal(U, U0 + Uw) and np.array_equal(g, g0 + gw)
        assert np.array_equal(targets.paper_energy(name, points, box=None)[0], U0)
