"""The researcher's defaults: a fit that stops once converged (and not before), the short anneal
from a Laplace start, the engine chosen by the target, BLAS threads pinned while a fit runs — and
a checkpointed run that resumes to the same answer with all of them."""

import numpy as np
import pytest

import planarflow as pf
from planarflow import base, fused, reference
from planarflow.library import threads
from planarflow.library.training import ANNEAL_FROM_MODE, STOP_WINDOW, converged


# --- the rule, as a pure function of the history -------------------------------------------------

def flat(n, rng=0, level=1.0, sd=0.3):
    return list(level + sd * np.random.default_rng(rng).standard_normal(n))


def first_stop(losses, betas, steps):
    """The first step count at which the rule says converged (None: never)."""
    for n in range(1, len(losses) + 1):
        if converged(losses[:n], betas[:n], steps):
            return n
    return None


def test_a_flat_noisy_loss_stops_at_the_first_two_checks_that_can_see_five_windows():
    losses, betas = flat(3000), [1.0] * 3000
    stop = first_stop(losses, betas, 3000)
    assert stop is not None and stop % STOP_WINDOW == 0 and stop >= 6 * STOP_WINDOW
    assert stop <= 1500                   # pure noise: it has nothing to wait for
    assert converged(losses[:stop - 1], betas[:stop - 1], 3000) is None


def test_a_drift_hidden_in_the_noise_of_one_window_keeps_the_run_going():
    """A fall of 0.9 nats over 3000 steps: 0.03 a window, under the 0.085 that two windows of
    noise sd 0.3 can resolve — invisible from one window to the next, plain over half the run.
    (A drift slower than the rule's resolution over half the run, ~0.085 nats here, is "converged":
    the rule's meaning, in the loss's own noise.)"""
    n = 3000
    losses = [a - 3e-4 * i for i, a in enumerate(flat(n, rng=1))]
    assert first_stop(losses, [1.0] * n, n) is None
    one_back = [converged_one_window_back(losses[:m]) for m in range(800, n + 1, STOP_WINDOW)]
    assert any(one_back)                  # what a rule that looked one window back would have done


def test_a_late_fall_after_a_plateau_is_not_cut_off_by_an_earlier_stop_check():
    """The loss sits flat for 400 steps, then falls by 1 nat: the rule needs five windows at β = 1."""
    losses = flat(400) + [1.0 - min(1.0, i / 300) for i in range(1600)]
    stop = first_stop(losses, [1.0] * 2000, 2000)
    assert stop is None or stop > 700


def converged_one_window_back(losses, window=STOP_WINDOW):
    """Two checks in a row, each the last window against the one before it only."""
    x = np.asarray(losses)
    for end in (x.size - window, x.size):
        last, earlier = x[end - window:end], x[end - 2 * window:end - window]
        if earlier.mean() - last.mean() > 2 * np.sqrt((last.var(ddof=1) + earlier.var(ddof=1)) / window):
            return False
    return True


def test_steps_before_beta_reaches_one_do_not_count():
    n, anneal = 3000, 1000
    losses = flat(n, rng=2)
    betas = [min(1.0, 0.01 + t / anneal) for t in range(n)]
    at_one = betas.index(1.0)
    stop = first_stop(losses, betas, n)
    assert stop is not None and stop >= at_one + 5 * STOP_WINDOW


def test_a_quarter_of_the_steps_is_the_least_a_run_takes():
    losses = flat(8000, rng=3)
    stop = first_stop(losses, [1.0] * 8000, 8000)
    assert stop is not None and stop >= 2000


def test_one_quiet_check_is_not_enough_two_in_a_row_are():
    """The loss falls until step 700, then is flat: the check at 800 compares a window that still
    falls and says no; only later checks, each seeing a flat pair of windows, stop the run."""
    losses = [2.0 - i / 700 for i in range(700)] + flat(2300, rng=4, sd=0.01)
    stop = first_stop(losses, [1.0] * 3000, 3000)
    assert stop is not None and stop >= 1000


# --- fit: the rule, the history, the arguments ---------------------------------------------------

def gaussian():
    return pf.Gaussian(mean=[3.0, -200.0], std=[0.5, 40.0])


def test_fit_on_a_researchers_target_stops_early_and_says_where_and_why():
    params, history = pf.fit(gaussian(), 2, 4000, 64, rng=0, progress=False)
    taken = history["steps_taken"]
    assert 1000 <= taken < 4000 and "converged" in history["stop_reason"]
    assert len(history["loss"]) == len(history["beta"]) == len(history["lr"]) == taken
    assert history["returned_step"] <= taken
    post = pf.posterior(params, gaussian(), 4000, rng=1)
    assert np.all(np.abs(post.mean - [3.0, -200.0]) < 0.1 * np.array([0.5, 40.0]))


def test_stop_steps_takes_every_step_and_the_paper_targets_do_by_default():
    _, history = pf.fit(gaussian(), 2, 1200, 64, rng=0, progress=False, stop="steps")
    assert history["steps_taken"] == 1200 == len(history["loss"])
    assert history["stop_reason"] == "took all 1200 steps"
    _, history = pf.fit(pf.get_target("U1"), 2, 1200, 64, rng=0, progress=False)
    assert history["steps_taken"] == 1200


def test_the_same_stop_with_either_engine():
    a = pf.fit(gaussian(), 2, 3000, 64, rng=0, progress=False, engine="reference")[1]
    b = pf.fit(gaussian(), 2, 3000, 64, rng=0, progress=False, engine="fused")[1]
    assert a["steps_taken"] == b["steps_taken"] < 3000
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("stop", ["soon", "", None, 1, "Converged"])
def test_a_bad_stop_is_refused_by_name(stop):
    with pytest.raises(ValueError, match="stop"):
        pf.fit(gaussian(), 2, 10, 8, rng=0, progress=False, stop=stop)


def test_a_population_cannot_stop_when_converged_and_takes_its_steps_by_default():
    with pytest.raises(ValueError, match="stop"):
        pf.fit(gaussian(), 2, 10, 8, rng=0, progress=False, population=2, stop="converged")
    _, history = pf.fit(gaussian(), 2, 700, 16, rng=0, progress=False, population=2)
    assert history["steps_taken"] == 700


# --- the anneal the start earns ------------------------------------------------------------------

def test_a_fresh_start_at_the_laplace_frame_anneals_briefly():
    _, history = pf.fit(gaussian(), 2, 600, 16, rng=0, progress=False, stop="steps")
    climb = int(0.99 * ANNEAL_FROM_MODE)                  # β = 0.01 + τ/A reaches 1 at τ = 0.99·A
    beta = np.asarray(history["beta"])
    assert np.all(beta[:climb] < 1.0) and np.all(beta[climb:] == 1.0)
    mode = pf.find_mode(gaussian())
    beta = np.asarray(pf.fit(gaussian(), 2, 600, 16, rng=0, progress=False, start=mode)[1]["beta"])
    assert np.all(beta[:climb] < 1.0) and np.all(beta[climb:] == 1.0)


def test_the_paper_targets_and_a_start_from_params_keep_no_anneal_and_a_given_anneal_is_kept():
    for target, kw in ((pf.get_target("U2"), {}),
                       (gaussian(), {"params": pf.init_params(2, 2, 0), "start": "auto"})):
        kw.pop("start", None)
        beta = pf.fit(target, 2, 50, 8, rng=None if "params" in kw else 0, progress=False, **kw)[1]["beta"]
        assert np.all(np.asarray(beta) == 1.0)
    beta = np.asarray(pf.fit(gaussian(), 2, 600, 16, rng=0, progress=False, anneal_steps=500)[1]["beta"])
    assert np.all(beta[:495] < 1.0) and np.all(beta[495:] == 1.0)


# --- the engine the target chooses ---------------------------------------------------------------

def engine_of(call, monkeypatch):
    """Which engine's loss a fit ran: a monkeypatch that records the calls proves the path."""
    seen = []
    for module, name in ((reference, "reverse_kl"), (base, "reverse_kl"), (fused, "reverse_kl_members")):
        original = getattr(module, name)

        def spy(*a, _name=name, _original=original, **k):
            seen.append(_name if _name != "reverse_kl" else "lesson")
            return _original(*a, **k)
        monkeypatch.setattr(module, name, spy)
    call()
    monkeypatch.undo()
    return set(seen)


def test_auto_runs_the_lesson_for_the_paper_targets_and_the_fused_engine_for_a_researchers(monkeypatch):
    fit = lambda target, **kw: pf.fit(target, 2, 5, 8, rng=0, progress=False, **kw)
    assert engine_of(lambda: fit(pf.get_target("U3")), monkeypatch) == {"lesson"}
    assert engine_of(lambda: fit(gaussian()), monkeypatch) == {"reverse_kl_members"}
    assert engine_of(lambda: fit(gaussian(), engine="reference"), monkeypatch) == {"lesson"}
    assert engine_of(lambda: fit(pf.get_target("U3"), engine="fused"), monkeypatch) == {"reverse_kl_members"}


# --- a checkpointed run resumes to the same answer ----------------------------------------------

class Interrupted(Exception):
    pass


def interrupt_at(step):
    def callback(t, loss, beta):
        if t + 1 == step:
            raise Interrupted
    return callback


@pytest.mark.parametrize("engine", ["auto", "reference"])
def test_a_run_interrupted_mid_way_resumes_to_the_same_stop_and_the_same_parameters(tmp_path, engine):
    kw = dict(K=2, steps=3000, batch_size=64, progress=False, checkpoint_every=100, engine=engine)
    whole, h_whole = pf.fit(gaussian(), rng=0, **kw)
    assert h_whole["steps_taken"] < 3000
    path = str(tmp_path / "run.npz")
    with pytest.raises(Interrupted):
        pf.fit(gaussian(), rng=0, checkpoint=path, callback=interrupt_at(450), **kw)
    again, h_again = pf.fit(gaussian(), resume=path, **kw)
    for k in whole:
        np.testing.assert_array_equal(whole[k], again[k])
    assert h_again["steps_taken"] == h_whole["steps_taken"] and h_again["stop_reason"] == h_whole["stop_reason"]
    assert h_again["returned_step"] == h_whole["returned_step"]
    np.testing.assert_array_equal(h_whole["loss"], h_again["loss"])


def test_a_run_that_worsened_late_resumes_to_the_same_best_parameters(tmp_path):
    """The keeper's best parameters and its average are in the checkpoint: a run whose target
    turns 50 nats worse from step 400 on returns a best from before it, interrupted or not."""
    clock = {"t": 0}                                      # the step the run is at, set by its callback

    def energy_and_grad(z):
        return 0.5 * (z * z).sum(axis=1) + (50.0 if clock["t"] >= 400 else 0.0), z

    def tick(t, loss, beta, stop_at=None):
        clock["t"] = t + 1
        if t + 1 == stop_at:
            raise Interrupted

    target = pf.Target(2, energy_and_grad=energy_and_grad)
    kw = dict(K=2, steps=600, batch_size=64, progress=False, start="standard", checkpoint_every=100, stop="steps")
    with pytest.warns(pf.FitWarning, match="best"):
        whole, h_whole = pf.fit(target, rng=0, callback=tick, **kw)
    assert h_whole["returned_step"] <= 400 < h_whole["steps_taken"]
    path = str(tmp_path / "run.npz")
    clock["t"] = 0
    with pytest.raises(Interrupted):
        pf.fit(target, rng=0, checkpoint=path, callback=lambda *a: tick(*a, stop_at=550), **kw)
    clock["t"] = 500                                      # the checkpoint's step
    kw.pop("start")
    with pytest.warns(pf.FitWarning, match="best"):
        again, h_again = pf.fit(target, resume=path, callback=tick, **kw)
    assert h_again["returned_step"] == h_whole["returned_step"]
    for k in whole:
        np.testing.assert_array_equal(whole[k], again[k])


def test_a_checkpoint_of_a_run_that_stopped_resumes_to_its_answer_without_a_step(tmp_path):
    path = str(tmp_path / "run.npz")
    kw = dict(K=2, steps=3000, batch_size=64, progress=False)
    first, h_first = pf.fit(gaussian(), rng=0, checkpoint=path, **kw)
    calls = []
    again, h_again = pf.fit(gaussian(), resume=path, callback=lambda *a: calls.append(a), **kw)
    assert calls == [] and h_again["stop_reason"] == h_first["stop_reason"]
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])


def test_resume_left_at_auto_keeps_the_checkpoints_engine_and_rule_and_a_changed_one_is_refused(tmp_path):
    path = str(tmp_path / "run.npz")
    kw = dict(K=2, steps=700, batch_size=16, progress=False)
    with pytest.raises(Interrupted):
        pf.fit(gaussian(), rng=0, checkpoint=path, checkpoint_every=100, engine="reference", stop="steps",
               callback=interrupt_at(350), **kw)
    _, history = pf.fit(gaussian(), resume=path, **kw)
    assert history["steps_taken"] == 700
    for changed in ({"engine": "fused"}, {"stop": "converged"}):
        with pytest.raises(ValueError, match=next(iter(changed))):
            pf.fit(gaussian(), resume=path, **kw, **changed)


# --- BLAS threads --------------------------------------------------------------------------------

@pytest.mark.skipif(threads.openblas() is None, reason="NumPy's BLAS is not an OpenBLAS this process can reach")
def test_a_fit_runs_on_one_blas_thread_and_puts_the_number_back():
    get, set_ = threads.openblas()
    before = get()
    set_(2)
    try:
        seen = []
        pf.fit(gaussian(), 2, 3, 8, rng=0, progress=False, callback=lambda *a: seen.append(get()))
        assert seen == [1, 1, 1] and get() == 2
        pf.fit(gaussian(), 2, 3, 8, rng=0, progress=False, blas_threads=None,
               callback=lambda *a: seen.append(get()))
        assert seen[3:] == [2, 2, 2]
        with pytest.raises(Interrupted):
            pf.fit(gaussian(), 2, 3, 8, rng=0, progress=False, callback=interrupt_at(2))
        assert get() == 2                                  # restored when the fit raises, too
    finally:
        set_(before)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                        (True, TypeError)])
def test_a_bad_blas_threads_is_refused_by_name(bad, error):
    with pytest.raises(error, match="blas_threads"):
        pf.fit(gaussian(), 2, 3, 8, rng=0, progress=False, blas_threads=bad)


def test_where_blas_cannot_be_reached_a_warning_says_how_to_set_it_by_hand(monkeypatch):
    monkeypatch.setattr(threads, "_found", [None])
    monkeypatch.setattr(threads, "_warned", [])
    for k in threads.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    with pytest.warns(RuntimeWarning, match="OPENBLAS_NUM_THREADS=1"):
        pf.fit(gaussian(), 2, 3, 8, rng=0, progress=False)
