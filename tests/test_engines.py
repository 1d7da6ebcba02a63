"""The code a student reads is the code that runs: reference.py is what planarflow computes, the
fused engine agrees with it to rounding, and reference.py works copied alone."""

import ast
import os
import sys

import numpy as np
import pytest

import planarflow as pf
from conftest import characteristic_params, grad_errors
from planarflow import fused, reference
from planarflow.library.validation import CheckedTarget

REFERENCE_PY = os.path.join(os.path.dirname(reference.__file__), "reference.py")


def target_for(d, k):
    if d == 2:
        return pf.get_target(["U1", "U2", "U3", "U4"][k % 4])
    return pf.Gaussian(np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d))


# --- the default fit is reference.fit -------------------------------------------------------

def test_an_edit_of_reference_fits_loop_changes_what_pf_fit_computes(monkeypatch):
    """pf.fit runs reference.fit's loop, looked up when called: a teacher who edits it (here the
    loop is replaced by one that halves every step's learning rate) sees pf.fit follow."""
    target = pf.get_target("U2")
    before, _ = pf.fit(target, 2, 20, 16, rng=0, progress=False)
    original = reference.fit
    monkeypatch.setattr(reference, "fit", lambda *a, **kw: original(*a, **dict(kw, lr=kw["lr"] / 2)))
    after, _ = pf.fit(target, 2, 20, 16, rng=0, progress=False)
    assert not np.allclose(after["u"], before["u"])


def test_fit_returns_exactly_what_reference_fit_returns():
    target = pf.get_target("U4")
    kw = dict(lr=2e-2, anneal_steps=40, rng=3, lr_final=1e-3)
    expected = reference.fit(target, 4, 80, 64, **kw)
    params, history = pf.fit(target, 4, 80, 64, progress=False, **kw)
    for k in "uwb":
        np.testing.assert_array_equal(params[k], expected[k])


@pytest.mark.parametrize("K", [8, 32])
def test_fused_and_reference_fits_agree_after_200_steps(K):
    """One step of the two engines agrees to ~1e-15; Adam divides each gradient by its running
    RMS, so where a component is small its rounding difference is magnified, and after 200
    steps the parameters differ by at most 9.5e-10 relative (measured over U1, U3, U4 × seeds
    0–2 × K = 8, 32; K = 8 stays below 4e-15). The bar, 1e-8, leaves a factor 10."""
    for name, seed in [("U1", 0), ("U3", 1)]:
        target = pf.get_target(name)
        kw = dict(lr=2e-2, lr_final=1e-3, anneal_steps=50, rng=seed, progress=False)
        ref, h_ref = pf.fit(target, K, 200, 256, **kw)
        fast, h_fast = pf.fit(target, K, 200, 256, engine="fused", **kw)
        for k in "uwb":
            assert np.max(np.abs(ref[k] - fast[k])) <= 1e-8 * np.max(np.abs(ref[k])), (name, k)
        np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("K,d,P", [(1, 1, 1), (5, 2, 1), (32, 2, 1), (27, 3, 2), (8, 5, 3), (6, 20, 2), (13, 40, 1)])
def test_fused_loss_and_gradient_equal_the_references_for_each_member(K, d, P):
    """fused.reverse_kl_members against reference.reverse_kl, member by member, in both of the
    blocks (K > fused.BLOCK: several, the last one partial), with populations and larger d."""
    rng = np.random.default_rng(K * 10 + d)
    members = [characteristic_params(K, d, rng) for _ in range(P)]
    stacked = {k: np.stack([m[k] for m in members]) for k in "uwb"}
    z0 = rng.standard_normal((P, 300, d))
    target = CheckedTarget(target_for(d, K), d)
    losses, grads = fused.reverse_kl_members(stacked, z0, target, 0.4)
    for p in range(P):
        loss, g = reference.reverse_kl(members[p], z0[p], target, 0.4)
        assert losses[p] == pytest.approx(loss, rel=1e-13, abs=1e-13)
        for key in "uwb":
            assert pf.rel_error(grads[key][p], g[key]) <= 1e-12


def test_fused_results_do_not_depend_on_earlier_calls():
    """The engine keeps its buffers in a Workspace between calls; what it returns must not care."""
    rng = np.random.default_rng(5)
    ws = fused.Workspace()
    small = {k: v[None] for k, v in pf.init_params(3, 2, rng).items()}
    big = {k: v[None] for k, v in pf.init_params(7, 2, rng, u_scale=1.0).items()}
    z_small, z_big = rng.standard_normal((1, 50, 2)), 3 * rng.standard_normal((1, 80, 2))
    target = pf.get_target("U2")
    first = fused.reverse_kl_members(small, z_small, target, 1.0, ws)
    fused.reverse_kl_members(big, z_big, target, 1.0, ws)
    fused.reverse_kl_members(small, 5 * z_small, target, 1.0, ws)
    again = fused.reverse_kl_members(small, z_small, target, 1.0, ws)
    np.testing.assert_array_equal(first[0], again[0])
    for k in "uwb":
        np.testing.assert_array_equal(first[1][k], again[1][k])


# --- an edit of reference.py changes what planarflow computes --------------------------------

def flipped(dy, dlogdet, cache, _original=reference.planar_backward):
    """planar_backward with the sign of the log-det's part flipped (Exercise 1's edit)."""
    return _original(dy, -dlogdet, cache)


def test_a_sign_flip_in_reference_planar_backward_fails_reverse_kls_gradient_check(monkeypatch):
    rng = np.random.default_rng(0)
    params = pf.init_params(3, 2, rng, u_scale=0.5)
    z0 = rng.standard_normal((64, 2))
    target = pf.get_target("U3")

    def worst_error():
        _, grads = pf.reverse_kl(params, z0, target)
        return max(grad_errors(lambda p: pf.reverse_kl(p, z0, target)[0], params, grads).values())

    assert worst_error() <= 1e-7
    monkeypatch.setattr(reference, "planar_backward", flipped)
    assert worst_error() >= 1e-2


def test_an_edit_of_reference_changes_the_default_fit_but_not_the_fused_engine(monkeypatch):
    target = pf.get_target("U1")
    kw = dict(lr=1e-2, rng=0, progress=False)
    before, _ = pf.fit(target, 3, 30, 32, **kw)
    before_fused, _ = pf.fit(target, 3, 30, 32, engine="fused", **kw)
    monkeypatch.setattr(reference, "planar_backward", flipped)
    after, _ = pf.fit(target, 3, 30, 32, **kw)
    after_fused, _ = pf.fit(target, 3, 30, 32, engine="fused", **kw)
    assert not np.allclose(after["u"], before["u"])
    np.testing.assert_array_equal(after_fused["u"], before_fused["u"])


def test_an_edit_of_reference_planar_forward_changes_sample_log_prob_and_kl(monkeypatch):
    params = pf.init_params(3, 2, rng=1, u_scale=0.5)
    target = pf.get_target("U2")
    y = np.array([[0.5, -0.3], [1.0, 2.0]])
    before = (pf.sample(params, 5, rng=2)[1], pf.log_prob(params, y), pf.kl_divergence(params, target, 100, rng=3)[0])
    original = reference.planar_forward

    def doubled_logdet(z, u, w, b):
        y_, logdet, cache = original(z, u, w, b)
        return y_, 2.0 * logdet, cache

    monkeypatch.setattr(reference, "planar_forward", doubled_logdet)
    after = (pf.sample(params, 5, rng=2)[1], pf.log_prob(params, y), pf.kl_divergence(params, target, 100, rng=3)[0])
    for b, a in zip(before, after):
        assert not np.allclose(a, b)


def functions_called(fn):
    """The (file name, function name) of every Python function that runs during fn()."""
    seen = set()

    def profiler(frame, event, arg):
        if event == "call":
            seen.add((os.path.basename(frame.f_code.co_filename), frame.f_code.co_name))

    sys.setprofile(profiler)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def test_the_public_functions_run_reference_py_and_never_enter_the_fused_engine():
    params = pf.init_params(4, 2, rng=0, u_scale=0.5)
    target = pf.get_target("U1")
    z0 = np.random.default_rng(1).standard_normal((20, 2))
    calls = {
        "reverse_kl": lambda: pf.reverse_kl(params, z0, target),
        "sample": lambda: pf.sample(params, 20, rng=0),
        "inverse": lambda: pf.inverse(params, z0),
        "log_prob": lambda: pf.log_prob(params, z0),
        "kl_divergence": lambda: pf.kl_divergence(params, target, 100, rng=0),
        "importance_log_z": lambda: pf.importance_log_z(params, target, 100, rng=0),
        "fit": lambda: pf.fit(target, 2, 3, 8, rng=0, progress=False),
    }
    for name, call in calls.items():
        seen = functions_called(call)
        assert not any(f == "fused.py" for f, _ in seen), name
        if name != "inverse":
            assert ("reference.py", "planar_forward") in seen, name
    assert ("reference.py", "planar_backward") in functions_called(calls["fit"])
    assert ("reference.py", "fit") in functions_called(calls["fit"])         # the lesson's own loop
    fused_fit = functions_called(lambda: pf.fit(target, 2, 3, 8, rng=0, progress=False, engine="fused"))
    assert ("fused.py", "fused_forward") in fused_fit and ("reference.py", "planar_forward") not in fused_fit


# --- reference.py is a file a teacher can lift --------------------------------------------------

def test_reference_py_imports_only_numpy_and_fits_in_450_lines():
    """NumPy for the method; the run at the end (under ``if __name__ == "__main__":``) may also
    import the standard library's sys and types and, for its picture only, matplotlib."""
    with open(REFERENCE_PY, encoding="utf-8") as f:
        source = f.read()
    assert len(source.splitlines()) <= 450

    def imports(nodes):
        found = set()
        for node in (n for top in nodes for n in ast.walk(top)):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, "no relative imports"
                found.add(node.module.split(".")[0])
        return found

    tree = ast.parse(source)
    main = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.dump(n.test)]
    assert imports([n for n in tree.body if n not in main]) == {"numpy"}
    assert imports(main) <= {"sys", "types", "matplotlib"}
    assert "# %% [markdown]" in source                             # percent cells: opens as a notebook


# reference.py copied alone and run, with and without matplotlib: tests/test_lesson.py
