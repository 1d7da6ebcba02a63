"""Hostile use of the researcher's surfaces (round four): a Mode as the start, check_target,
posterior estimates, Target, resumed runs with a frame, sizes, command lines — each bad input a
clear error naming the argument before any work, or the right answer; never a silently wrong number."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import planarflow as pf
from planarflow.library import files as io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Counting:
    """A Gaussian target centred at (1, −2) that counts the points its energy is asked for."""

    dim = 2
    name = "counting"

    def __init__(self):
        self.points = 0

    def energy_and_grad(self, z):
        self.points += len(z)
        d = z - np.array([1.0, -2.0])
        return 0.5 * (d * d).sum(axis=1), d

    def energy(self, z):
        return self.energy_and_grad(z)[0]


def quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.FitWarning)
        return pf.fit(*args, progress=False, **kw)


# --- a Mode edited by hand is checked before it is trained on -------------------------------------

@pytest.mark.parametrize("attr, value, match", [
    ("scale", [[1.0, 0.5], [0.5, 1.0]], "start.scale: expected a lower-triangular"),      # symmetric
    ("scale", [[-1.0, 0.0], [0.2, 1.0]], "start.scale: expected a positive diagonal"),
    ("scale", [[np.nan, 0.0], [0.2, 1.0]], "start.scale: expected finite values"),
    ("scale", np.eye(3), r"start.scale: expected shape \(2, 2\)"),
    ("scale", [[0.0, 0.0], [0.0, 1.0]], "start.scale: expected a positive diagonal"),
    ("scale", "identity", "start.scale: expected an array of real numbers"),
    ("scale", [[1.0 + 1j, 0.0], [0.0, 1.0]], "start.scale: expected an array of real numbers"),
    ("x", [np.inf, 0.0], "start.x: expected finite values"),
    ("x", [0.0, 0.0, 0.0], r"start.x: expected shape \(2,\)"),
    ("x", None, "start.x: expected an array of real numbers"),
])
def test_a_mode_edited_by_hand_is_refused_by_name_before_any_training(attr, value, match):
    target = Counting()
    mode = pf.find_mode(target)
    setattr(mode, attr, np.asarray(value) if isinstance(value, list) else value)
    before = target.points
    with pytest.raises((ValueError, TypeError), match=match):
        pf.fit(target, 2, 50, 64, rng=0, start=mode, progress=False)
    assert target.points == before                       # no work was done


def test_a_mode_as_found_is_the_start_and_the_fit_lands_on_the_target():
    target = Counting()
    params, history = quiet_fit(target, 2, 300, 256, rng=0, start=pf.find_mode(target))
    # a Gaussian target: log Z = log 2π, and the loss cannot go below −log Z
    assert history["loss"][-50:].mean() >= -np.log(2 * np.pi) - 0.02
    np.testing.assert_allclose(params["mu"], [1.0, -2.0], atol=0.05)


@pytest.mark.parametrize("start, target", [
    ("standard", Counting()), (None, Counting()), ("auto", pf.get_target("U1"))])
def test_x0_is_refused_where_no_mode_is_searched_for(start, target):
    start = pf.find_mode(Counting()) if start is None else start
    with pytest.raises(ValueError, match="^x0: it is where the mode search begins"):
        pf.fit(target, 2, 5, 8, rng=0, start=start, x0=[100.0, 100.0], progress=False)


def test_x0_is_used_by_a_mode_search():
    """A narrow target far from the origin: from x0 near it, the search finds it."""
    t = pf.Target(1, energy_and_grad=lambda z: (0.5 * ((z[:, 0] - 1e4) / 1e-2) ** 2, (z - 1e4) / 1e-4))
    params, _ = quiet_fit(t, 1, 20, 16, rng=0, start="mode", x0=[9999.9])
    assert abs(params["mu"][0] - 1e4) < 1e-2


# --- resumed runs ------------------------------------------------------------------------------

def test_a_run_resumed_with_the_same_start_ends_where_the_uninterrupted_run_ends(tmp_path):
    ck = str(tmp_path / "run.ckpt")
    target = Counting()
    whole, _ = quiet_fit(target, 2, 60, 32, rng=0, start="standard")
    quiet_fit(target, 2, 60, 32, rng=0, start="standard", checkpoint=ck, checkpoint_every=30)
    # the same call again, with resume: accepted, and the end is the same
    again, _ = quiet_fit(target, 2, 60, 32, start="standard", resume=ck)
    for k in whole:
        np.testing.assert_array_equal(whole[k], again[k])
    with pytest.raises(ValueError, match="^start: the checkpoint .* start = 'standard'"):
        quiet_fit(target, 2, 60, 32, start="mode", resume=ck)


def test_a_run_resumed_with_its_mode_is_accepted_and_another_mode_is_refused(tmp_path):
    ck = str(tmp_path / "run.ckpt")
    target = Counting()
    mode = pf.find_mode(target)
    quiet_fit(target, 2, 40, 32, rng=0, start=mode, checkpoint=ck)
    quiet_fit(target, 2, 40, 32, start=mode, resume=ck)                     # the same Mode: fine
    other = pf.find_mode(target)
    other.x = other.x + 1.0
    with pytest.raises(ValueError, match="^start: this Mode is not the frame"):
        quiet_fit(target, 2, 40, 32, start=other, resume=ck)


def test_a_checkpoint_with_a_frame_but_no_base_is_refused_before_any_step(tmp_path):
    ck = str(tmp_path / "run.ckpt")
    target = Counting()
    quiet_fit(target, 2, 40, 32, rng=0, checkpoint=ck, checkpoint_every=20)
    arrays = io._read_npz(ck, io.CHECKPOINT_ARRAYS, optional=(io.CHECKPOINT_BASE, io.CHECKPOINT_FRAME))
    for k in io.CHECKPOINT_BASE:
        del arrays[k]
    io._save_npz(ck, arrays, "checkpoint")
    steps = []
    with pytest.raises(ValueError, match="holds a frame but no learnable base"):
        pf.fit(target, 2, 40, 32, resume=ck, progress=False, callback=lambda *a: steps.append(a))
    assert steps == []


# --- check_target ------------------------------------------------------------------------------

def gaussian_target(grad_scale=1.0, dtype=np.float64, offset=3.0):
    """U = ½‖z‖² + offset in ``dtype``, with the gradient grad_scale·z (right when 1)."""
    return pf.Target(2, energy_and_grad=lambda z: ((0.5 * (z * z).sum(1) + offset).astype(dtype),
                                                   (grad_scale * z).astype(dtype)))


def test_check_target_refuses_a_target_without_a_gradient_of_its_own():
    with pytest.raises(TypeError, match="^target: it has no gradient of its own"):
        pf.check_target(pf.Target(2, energy=lambda z: (z * z).sum(1)))


@pytest.mark.parametrize("tolerance, error", [(-1.0, ValueError), (0.0, ValueError), (np.nan, ValueError),
                                              (2.0, ValueError), ("1e-6", TypeError), (1e-6j, TypeError)])
def test_check_target_refuses_a_bad_tolerance(tolerance, error):
    with pytest.raises(error, match="^tolerance:"):
        pf.check_target(gaussian_target(), tolerance=tolerance)


def test_check_target_refuses_sizes_it_cannot_hold_before_any_work():
    with pytest.raises(ValueError, match="^n:"):
        pf.check_target(gaussian_target(), n=10 ** 9)


def test_a_right_gradient_agrees_and_a_wrong_one_by_a_thousandth_does_not():
    right = pf.check_target(gaussian_target(), rng=0)
    assert right.ok and not right.limited and right.max_error < 1e-8
    wrong = pf.check_target(gaussian_target(1.001), rng=0)
    assert not wrong.ok and "DISAGREES" in repr(wrong)
    assert wrong.max_error == pytest.approx(0.001 / 2.001, rel=1e-4)   # |1.001z − z|/(|1.001z| + |z|)


def test_a_right_float32_gradient_is_not_called_wrong_and_float32_is_named():
    with pytest.warns(pf.LowPrecisionWarning, match="float32"):
        result = pf.check_target(gaussian_target(dtype=np.float32), rng=0)
    assert result.ok and result.limited                       # agrees as far as float32 lets us tell
    assert "float32" in repr(result) and "DISAGREES" not in repr(result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.LowPrecisionWarning)
        wrong = pf.check_target(gaussian_target(1.1, dtype=np.float32), rng=0)
    assert not wrong.ok                                        # a 10% error is still seen


def test_check_target_skips_points_where_the_target_is_not_finite_and_says_so():
    t = pf.Target(2, energy_and_grad=lambda z: (np.where(z[:, 0] > 0.5, np.nan, 0.5 * (z * z).sum(1)), z))
    points = np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.3], [2.0, 0.0]])
    result = pf.check_target(t, points=points)
    assert result.ok and result.skipped == 2 and result.used == 2
    assert "2 of 4 points were skipped" in repr(result)
    with pytest.raises(ValueError, match="^points: .* not finite at any"):
        pf.check_target(t, points=points[[1, 3]])


# --- posterior estimates -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def post():
    target = Counting()
    params, _ = quiet_fit(target, 2, 200, 128, rng=0)
    return pf.posterior(params, target, 2000, rng=1)


@pytest.mark.parametrize("call, match", [
    (lambda p: p.expect(lambda z: z[:, 0] + 1j), "^f: expected real numbers"),
    (lambda p: p.quantile(0.5, f=lambda z: z[:, 0] + 1j), "^f: expected real numbers"),
    (lambda p: p.expect(lambda z: np.array(["1.5"] * len(z))), "^f: expected real numbers"),
    (lambda p: p.expect(3), "^f: expected a function"),
    (lambda p: p.expect(None), "^f: expected a function"),
    (lambda p: p.quantile(0.5, f=3), "^f: expected a function"),
    (lambda p: p.quantile("0.5"), "^q: expected a number"),
    (lambda p: p.quantile(0.5 + 0.9j), "^q: expected a number"),
    (lambda p: p.quantile(True), "^q: expected a number"),
    (lambda p: p.quantile([0.1, None]), "^q: expected a number"),
    (lambda p: p.resample("10"), "^m: expected an integer"),
    (lambda p: p.expect(lambda z: [[1.0]] + [[1.0, 2.0]] * (len(z) - 1)), "^f: expected an array of real"),
])
def test_posterior_methods_refuse_bad_arguments_by_name(post, call, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no ComplexWarning: nothing is cast
        with pytest.raises(TypeError, match=match):
            call(post)


def test_posterior_refuses_sizes_and_ranges_by_name(post):
    with pytest.raises(ValueError, match="^q: expected numbers in"):
        post.quantile(1.5)
    with pytest.raises(ValueError, match="^q: expected numbers in"):
        post.quantile([])
    with pytest.raises(ValueError, match="^m: "):
        post.resample(10 ** 8)                           # 10⁸ draws of 2 numbers: more than 10⁸


def test_posterior_names_must_be_a_list_of_strings():
    target = Counting()
    params = pf.init_params(1, 2, rng=0)
    with pytest.raises(TypeError, match="^names: expected a list of 2 strings"):
        pf.posterior(params, target, 100, rng=0, names=(n for n in "ab"))
    with pytest.raises(ValueError, match="^names: expected 2 strings"):
        pf.posterior(params, target, 100, rng=0, names=["a"])
    target.names = "ab"
    with pytest.raises(TypeError, match="^target.names"):
        pf.posterior(params, target, 100, rng=0)


@pytest.mark.parametrize("f, match", [
    (lambda z: np.empty((len(z), 0)), r"^f: expected values of shape \(2000,\) or \(2000, m ≥ 1\)"),
    (lambda z: z[:10, 0], r"^f: expected values of shape"),
    (lambda z: np.log(z[:, 0]), r"^f: returned NaN or infinite values, e.g. at the draw \["),
])
def test_expect_and_quantile_refuse_values_they_cannot_use_by_name(post, f, match):
    for call in (post.expect, lambda f: post.quantile(0.5, f=f)):
        with pytest.raises(ValueError, match=match), np.errstate(invalid="ignore"):
            call(f)


def test_expect_of_an_indicator_is_a_weighted_probability(post):
    """Booleans are numbers here: E[1{z₀ > 1}] is the weighted share of draws above 1."""
    share = post.expect(lambda z: z[:, 0] > 1.0)
    assert share == pytest.approx(float(np.sum(post.weights[post.samples[:, 0] > 1.0])), rel=1e-12)
    assert 0.4 < share < 0.6                               # the target's mean in z₀ is 1


# --- sizes: refused by name before any work -----------------------------------------------------

def test_a_mode_search_too_large_to_hold_is_refused_before_the_energy_is_called():
    calls = []

    def energy_and_grad(z):
        calls.append(len(z))
        return 0.5 * (z * z).sum(1), z

    big = pf.Target(30_000, energy_and_grad=energy_and_grad)
    with pytest.raises(ValueError, match="^target.dim: the mode search's Hessian in d = 30000"):
        pf.find_mode(big)
    with pytest.raises(ValueError, match="^dim: a flow with a learnable base in d = 30000"):
        pf.fit(big, 1, 1, 1, progress=False)
    energy_only = pf.Target(2000, energy=lambda z: calls.append(len(z)) or 0.5 * (z * z).sum(1))
    with pytest.raises(ValueError, match="give the target a gradient"):
        pf.find_mode(energy_only)
    assert calls == []


def test_the_flows_own_draws_go_through_its_own_density():
    """A base as wide as the domain allows (σ = e^230) draws points beyond 1e100; log_prob takes them."""
    params = pf.init_params(2, 2, rng=0, base=True)
    params["log_sigma"][:] = 230.0
    z, log_q = pf.sample(params, 50, rng=0)
    assert np.abs(z).max() > 1e100
    np.testing.assert_allclose(pf.log_prob(params, z), log_q, rtol=1e-12)


# --- messages that name the problem -------------------------------------------------------------

@pytest.mark.parametrize("returns", [lambda z: (z[:, 0], z, 1.0), lambda z: z, lambda z: None])
def test_energy_and_grad_must_return_a_pair_and_the_message_says_so(returns):
    with pytest.raises(TypeError, match=r"^energy_and_grad: expected it to return a pair \(U, ∇U\)"):
        pf.Target(2, energy_and_grad=returns).energy_and_grad(np.zeros((5, 2)))


@pytest.mark.parametrize("kind", ["energy", "log_density"])
def test_a_function_of_one_point_is_named_and_told_how_to_vectorise(kind):
    one_point = lambda z: float(np.sum(np.asarray(z) ** 2))          # noqa: E731
    target = pf.Target(3, **{kind: one_point})
    for call in (lambda: target.energy(np.zeros((5, 3))), lambda: target.grad(np.zeros((5, 3)))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pf.NumericalGradientWarning)
            with pytest.raises(ValueError, match=f"^{kind}: expected shape .* must be vectorised.*np.vectorize"):
                call()


def test_find_mode_names_an_improper_density():
    improper = pf.Target(2, energy_and_grad=lambda z: (-(z * z).sum(1) + 1e-3 * z[:, 0],
                                                       -2 * z + np.array([1e-3, 0.0])))
    with pytest.raises(pf.ModeNotFound, match="improper"):
        pf.find_mode(improper)


def test_parameters_whose_u_and_w_differ_in_shape_are_named_together():
    with pytest.raises(ValueError, match=r"^params\['u'\], params\['w'\]: expected the same shape"):
        pf.sample({"u": np.zeros((2, 3)), "w": np.ones((2, 2)), "b": np.zeros(2)}, 3)


def test_backward_functions_check_their_upstream_gradients_and_cache():
    params = pf.init_params(2, 2, rng=0)
    z = np.random.default_rng(0).standard_normal((5, 2))
    _, _, cache = pf.planar_forward(z, params["u"][0], params["w"][0], params["b"][0])
    _, _, caches = pf.flow_forward(params, z)
    with pytest.raises(ValueError, match=r"^dy: expected shape \(5, 2\)"):
        pf.planar_backward(np.ones((4, 2)), np.ones(5), cache)
    with pytest.raises(TypeError, match="^dlogdet: expected an array of real numbers"):
        pf.planar_backward(np.ones((5, 2)), np.ones(5) + 1j, cache)
    with pytest.raises(TypeError, match="^cache: expected the cache that planar_forward returned"):
        pf.planar_backward(np.ones((5, 2)), np.ones(5), None)
    with pytest.raises(TypeError, match="^caches: expected the caches that flow_forward returned"):
        pf.flow_backward(np.ones((5, 2)), np.ones(5), cache)
    with pytest.raises(ValueError, match="^dsum_logdet: expected finite values"):
        pf.flow_backward(np.ones((5, 2)), np.full(5, np.nan), caches)


def test_a_flow_whose_parameters_stop_being_finite_is_not_blamed_on_the_target():
    with pytest.raises(pf.TrainingDiverged) as info:
        pf.fit(Counting(), 2, 20, 16, lr=1e300, lr_final=1e300, rng=0, start="standard", progress=False)
    assert "target." not in str(info.value).split(".")[0]


# --- command lines: a flag is honoured or refused, never ignored ---------------------------------

def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_reference_recipe_honours_the_gradient_flag():
    from planarflow.lab.runner import make_jobs
    sys.path.insert(0, ROOT)
    import demo

    jobs = make_jobs(["U1"], [2], recipe_name="reference", gradient="path")
    assert jobs[0]["gradient"] == "path"
    args = demo.parse_args(["--recipe", "reference", "--gradient", "path", "--K", "2", "--targets", "U1"])
    assert args.jobs[0]["gradient"] == "path"
    assert demo.parse_args(["--recipe", "reference", "--K", "2"]).jobs[0]["gradient"] == "full"


@pytest.mark.parametrize("args", [["--placement", "--posteriors"], ["--placement", "--steps", "20"],
                                  ["--posteriors", "--no-demo"]])
def test_the_benchmark_refuses_flags_it_would_ignore(args):
    res = run("-m", "planarflow", "benchmark", *args)
    assert res.returncode == 2 and "error:" in res.stderr and res.stdout == ""


def test_the_lesson_refuses_arguments_instead_of_training(tmp_path):
    res = run(os.path.join(ROOT, "planarflow", "reference.py"), "--steps", "5", cwd=tmp_path)
    assert res.returncode != 0 and "usage" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("out", ["fig.txt", "missing_dir/fig.png", "."])
def test_figure3_checks_its_output_before_any_fit(tmp_path, out):
    res = run(os.path.join(ROOT, "planarflow", "figure3.py"), "--K", "1", "--steps", "1", "--out", out,
              cwd=tmp_path)
    assert res.returncode == 2 and "--out" in res.stderr and "fitted" not in res.stdout
