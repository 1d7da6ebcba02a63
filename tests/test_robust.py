"""Round three of hostile use: writers that race, streams that close, commands that check before
they work, inputs that only look numeric, and a module that must stay a module."""

import io
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import planarflow as pf
from planarflow.lab.refresh_readme import ROOT

GOOD = pf.init_params(3, 2, rng=0)


# --- writers ------------------------------------------------------------------------------------

def test_two_threads_saving_one_path_leave_exactly_one_complete_file(tmp_path):
    path = tmp_path / "flow.npz"
    flows = [pf.init_params(3, 2, rng=i) for i in range(2)]
    errors = []

    def writer(i):
        for _ in range(100):
            try:
                pf.save(path, flows[i])
            except Exception as exc:            # noqa: BLE001 — any failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    back = pf.load(path)
    assert any(np.array_equal(back["u"], f["u"]) for f in flows)
    assert sorted(os.listdir(tmp_path)) == ["flow.npz"]                      # no temporaries left


def test_a_legal_254_character_name_can_be_saved_and_a_folder_name_cannot(tmp_path):
    long = tmp_path / ("f" * 250 + ".npz")
    pf.save(long, GOOD)
    np.testing.assert_array_equal(pf.load(long)["u"], GOOD["u"])
    with pytest.raises(ValueError, match="folder"):
        pf.save(str(tmp_path / "newdir") + os.sep, GOOD)
    assert not (tmp_path / "newdir").exists()


def test_load_of_a_proc_file_names_the_path():
    with pytest.raises(ValueError, match="pagemap"):
        pf.load("/proc/self/pagemap")


def checkpoint_with(tmp_path, name, **meta_changes):
    """A real checkpoint of a 3-layer 2-D flow, its metadata changed."""
    ckpt = tmp_path / "run.ckpt"
    pf.fit(pf.get_target("U2"), 3, 20, 8, rng=0, progress=False, checkpoint=ckpt, checkpoint_every=10)
    with zipfile.ZipFile(ckpt) as zf:
        arrays = {n[:-4]: np.load(io.BytesIO(zf.read(n))) for n in zf.namelist()}
    meta = json.loads(arrays["meta"].tobytes().decode())
    meta.update(meta_changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = tmp_path / name
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_a_checkpoint_whose_dimension_contradicts_its_arrays_names_the_path(tmp_path):
    class Target3:
        dim = 3

        def energy(self, z):
            return 0.5 * (z * z).sum(axis=1)

    path = checkpoint_with(tmp_path, "dim.ckpt", dim=3, target=pf.library.training.target_identity(Target3()))
    with pytest.raises(ValueError, match="dim.ckpt"):
        pf.fit(Target3(), 3, 20, 8, resume=path, progress=False)


# --- streams that close ---------------------------------------------------------------------------

class Gone:
    """A stream whose reader has gone: every write raises BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self):
        return False


@pytest.mark.parametrize("stream", [Gone(), "closed"])
def test_fit_with_progress_survives_a_closed_stderr(monkeypatch, stream):
    from planarflow.library import progress
    if stream == "closed":
        stream = io.StringIO()
        stream.close()
    monkeypatch.setattr(progress.Progress, "due", lambda self: self.enabled)       # report every step
    monkeypatch.setattr(sys, "stderr", stream)
    params, history = pf.fit(pf.get_target("U1"), 2, 30, 16, rng=0, progress=True)
    assert len(history["loss"]) == 30 and np.all(np.isfinite(params["u"]))


def test_demo_piped_with_its_stderr_into_head_still_writes_every_figure(tmp_path):
    out = tmp_path / "f.png"
    cmd = f"{sys.executable} {os.path.join(ROOT, 'demo.py')} --quick --targets U1 --K 2 --out {out} 2>&1 | head -1"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    assert res.stdout.startswith("Fitting")
    for name in ("f.png", "f_training.png", "f_layers.png", "f_layers.gif"):
        assert (tmp_path / name).exists(), name


# --- commands: --help never starts work; output paths are checked before the first fit -----------

@pytest.mark.parametrize("command", [["demo.py"], ["-m", "planarflow"], ["-m", "planarflow", "experiment"],
                                     ["-m", "planarflow", "benchmark"],
                                     ["-m", "planarflow", "exercises"], ["-m", "planarflow", "refresh-readme"]])
def test_every_command_answers_help_without_starting_work(command, tmp_path):
    readme = os.path.join(ROOT, "README.md")
    before = os.stat(readme).st_mtime_ns
    script = [os.path.join(ROOT, command[0])] if command[0].endswith(".py") else command
    res = subprocess.run([sys.executable, *script, "--help"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0 and res.stdout.startswith("usage:"), res.stderr
    assert os.listdir(tmp_path) == [] and os.stat(readme).st_mtime_ns == before     # nothing written


@pytest.mark.parametrize("args, word", [
    (["--quick", "--save-dir", "READONLY"], "not writable"),
    (["--quick", "--save-dir", "BLOCKED"], "is a folder"),
    (["--kl-vs-k", "--quick", "--out", "fig.txt"], ".png"),
])
def test_the_experiment_checks_its_outputs_before_any_fit(args, word, tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    blocked = tmp_path / "blocked"
    (blocked / "U1_K2_seed0.npz").mkdir(parents=True)
    args = [{"READONLY": str(readonly), "BLOCKED": str(blocked)}.get(a, a) for a in args]
    res = subprocess.run([sys.executable, "-m", "planarflow", "experiment", *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 2 and word in res.stderr and "fits in" not in res.stdout


@pytest.mark.parametrize("steps", ["0", "-40", "1"])
def test_the_benchmark_refuses_too_few_steps(steps):
    res = subprocess.run([sys.executable, "-m", "planarflow", "benchmark", "--no-demo", "--steps", steps],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 2 and "--steps" in res.stderr and "Traceback" not in res.stderr


def test_the_benchmark_prints_a_negative_fitted_cost_with_its_own_sign():
    from planarflow.lab.benchmark import cost_formula

    text = cost_formula([0.331, -0.0003, 0.077, 0.0276])
    assert text == "0.331 − 0.0003·K + 0.077·(batch/1000) + 0.0276·K·(batch/1000)"
    assert "+ -" not in cost_formula([-1.0, -2.0, -3.0, -4.0])


def test_planarflow_and_its_benchmark_never_import_jax_until_the_comparison_runs():
    """JAX is the benchmark's peer, an optional extra: importing planarflow, its tools or the
    benchmark module must not import it (the tests and the README's commands never need it)."""
    code = ("import sys, planarflow, planarflow.lab.benchmark, planarflow.lab.peer_jax, "
            "planarflow.lab.experiment; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'jaxlib', 'scipy', 'torch')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


# --- inputs that only look numeric; arguments blamed by name --------------------------------------

def test_numerical_gradient_restores_x_when_f_raises_and_names_f_when_it_returns_no_number():
    x = np.array([1.0, 2.0, 3.0])

    def raises_on_the_second(v):
        if v[1] != 2.0:
            raise KeyboardInterrupt
        return float(v.sum())

    with pytest.raises(KeyboardInterrupt):
        pf.numerical_gradient(raises_on_the_second, x)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    for bad in (lambda v: v, lambda v: None, lambda v: "1"):
        with pytest.raises(TypeError, match="f"):
            pf.numerical_gradient(bad, x)
    with pytest.raises(ValueError, match="f"):
        pf.numerical_gradient(lambda v: np.nan, x)


def test_times_dates_and_long_doubles_beyond_float64_are_refused_by_name():
    target = pf.get_target("U1")
    with pytest.raises(TypeError, match="z0"):
        pf.reverse_kl(GOOD, np.array([[1, 2]], dtype="timedelta64[s]"), target)
    with pytest.raises(TypeError, match="z0"):
        pf.reverse_kl(GOOD, np.array([["2020-01-01", "2020-01-02"]], dtype="datetime64[D]"), target)
    big = np.array([[np.longdouble("1e400"), 0.0]], dtype=np.longdouble)
    if np.isfinite(big[0, 0]):                        # platforms whose long double is wider than float64
        with pytest.raises(ValueError, match="float64's range"):
            pf.reverse_kl(GOOD, big, target)


def test_sizes_blame_the_argument_that_is_too_large():
    class Huge:
        dim = 30_000_000

        def energy(self, z):
            return np.zeros(len(z))

    with pytest.raises(ValueError, match="smaller dim"):
        pf.fit(Huge(), 2, 5, 512, progress=False)
    with pytest.raises(ValueError, match="smaller dim"):
        pf.init_params(1, 10 ** 8)


def test_importance_log_z_with_numpy_true_still_needs_21_draws():
    with pytest.raises(ValueError, match="n"):
        pf.importance_log_z(GOOD, pf.get_target("U1"), 5, return_k_hat=np.True_)


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_a_non_callable_energy_and_grad_is_refused_the_same_way_by_both_engines(engine):
    class Odd:
        dim = 2
        energy_and_grad = 1

        def energy(self, z):
            return np.zeros(len(z))

        def grad(self, z):
            return np.zeros_like(z)

    with pytest.raises(TypeError, match="energy_and_grad"):
        pf.fit(Odd(), 2, 5, 8, progress=False, engine=engine)


def test_planarflow_inverse_is_the_module_and_calling_it_inverts():
    import planarflow.inverse as inv
    assert callable(inv.solve_alpha) and inv.__name__ == "planarflow.inverse"
    y, _ = pf.sample(GOOD, 5, rng=0)
    z0 = pf.inverse(GOOD, y)
    np.testing.assert_allclose(pf.flow_forward(GOOD, z0)[0], y, atol=1e-12)
    with pytest.raises(ValueError, match="y"):
        pf.inverse(GOOD, np.zeros((2, 3)))


def test_no_diagnostic_is_nan_when_the_energy_is_at_the_edge_of_float64():
    """U = 1.7e308 everywhere: log q + U overflows (the KL is beyond float64: inf, said as inf),
    and every weight is e^{−1.7e308} (equal: ESS/n = 1, a perfect proposal up to rounding)."""
    import warnings

    class Edge:
        dim = 2

        def energy(self, z):
            return np.full(len(z), 1.7e308)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kl, se = pf.kl_divergence(GOOD, Edge(), 1000, rng=0, log_z=0.0)
        log_z, ess, k_hat = pf.importance_log_z(GOOD, Edge(), 1000, rng=0, return_k_hat=True)
    assert kl == se == np.inf
    assert np.isfinite(log_z) and ess == pytest.approx(1.0) and k_hat < 0.7
