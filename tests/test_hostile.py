"""Hostile use: nothing hangs, nothing is silently wrong, files and figures are written safely."""

import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

import planarflow as pf
from planarflow import reference
from planarflow.lab.runner import WorkerFailed, make_jobs, run_jobs
from planarflow.library.validation import MIN_WTU

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = pf.init_params(3, 2, rng=0)


# --- exceptions cross process boundaries ---------------------------------------------------------

def test_every_planarflow_exception_pickles_with_its_attributes():
    err = pf.TrainingDiverged("boom", step=7, history={"loss": np.arange(3.0)}, params=GOOD)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == "boom" and back.step == 7
    np.testing.assert_array_equal(back.history["loss"], np.arange(3.0))
    np.testing.assert_array_equal(back.params["u"], GOOD["u"])
    failed = pickle.loads(pickle.dumps(WorkerFailed("gone", "U1 K=2")))
    assert str(failed) == "gone" and failed.job == "U1 K=2"


def test_a_diverging_fit_in_a_worker_is_reported_not_waited_on():
    jobs = make_jobs(["U1", "U2"], [2], steps=50, batch_size=64, grid_n=20, kl_samples=1000, lr=1e300)
    results = run_jobs(jobs, workers=2, progress=False)
    # step 0's update leaves the domain (entries of 1e300); step 1's loss is not finite: scored
    # from the parameters step 1 started from, the valid start
    assert all(r["diverged"] in (0, 1) and np.isfinite(r["kl"]) for r in results)


def test_a_worker_that_cannot_start_reports_why(monkeypatch):
    """The system refusing a process (too many processes, say) surfaces as its own error, and
    the workers already started are stopped — not an AssertionError from joining the unstarted."""
    import multiprocessing.context as mpc

    started = []
    real_start = mpc.SpawnProcess.start

    def start(self):
        if started:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(mpc.SpawnProcess, "start", start)
    jobs = make_jobs(["U1", "U2"], [2], steps=20, batch_size=64, grid_n=10, kl_samples=1000)
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        run_jobs(jobs, workers=2, progress=False)
    started[0].join(timeout=10)
    assert not started[0].is_alive()


def test_a_worker_killed_by_the_system_is_named_promptly():
    jobs = make_jobs(["U1", "U2", "U3"], [32], steps=20000, batch_size=1024, grid_n=20, kl_samples=1000)
    before = set(_spawned())

    def cpu_seconds(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def kill_one():
        """Kill a worker once it has spent 3 s of CPU time — well into its job, however busy the machine."""
        found = []

        def training():
            found[:] = [pid for pid in set(_spawned()) - before if cpu_seconds(pid) > 3.0]
            return found
        if eventually(training, patience=120.0):
            os.kill(min(found), signal.SIGKILL)

    threading.Thread(target=kill_one, daemon=True).start()
    with pytest.raises(WorkerFailed, match=r"running U\d K=32 died \(killed by signal 9"):
        run_jobs(jobs, workers=2, progress=False)
    assert eventually(lambda: set(_spawned()) - before == set())       # no worker left behind


def eventually(condition, patience=60.0):
    """Poll ``condition`` until it holds (True) or ``patience`` seconds pass (False): a check that
    something happens, however busy the machine — never a bound on how fast."""
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _spawned():
    out = subprocess.run(["pgrep", "-f", "multiprocessing.spawn"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


# --- fit never returns what the library refuses ------------------------------------------------

@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_a_huge_learning_rate_ends_in_training_diverged_with_valid_parameters(engine, tmp_path):
    with pytest.raises(pf.TrainingDiverged) as info:
        pf.fit(pf.get_target("U1"), 3, 200, 64, lr=1000.0, rng=0, progress=False, engine=engine)
    params = info.value.params
    pf.save(tmp_path / "valid.npz", params)                          # accepted by save
    pf.sample(params, 10, rng=0)
    assert "domain" in str(info.value) or "not finite" in str(info.value)


def test_the_singular_threshold_is_where_a_sample_on_the_hyperplane_keeps_finite_gradients():
    """At wᵀu = MIN_WTU exactly, a sample exactly on the hyperplane wᵀz + b = 0 (where D equals
    softplus(wᵀu) ≈ e^{wᵀu}) still gets finite gradients; just below, the parameters are refused."""
    w = np.array([[1.0, 0.0]])
    params = {"u": np.array([[MIN_WTU, 0.0]]), "w": w, "b": np.array([0.5])}
    z0 = np.array([[-0.5, 0.3], [-0.5, -1.0], [0.2, 0.0]])          # two samples on the hyperplane
    with np.errstate(all="raise"):
        loss, grads = pf.reverse_kl(params, z0, pf.Gaussian([0.0, 0.0], [1.0, 1.0]))
        _, logdet, cache = pf.planar_forward(z0, params["u"][0], w[0], 0.5)
        layer_grads = pf.planar_backward(np.ones((3, 2)), np.ones(3), cache)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert all(np.all(np.isfinite(g)) for g in layer_grads)
    assert logdet[0] == pytest.approx(MIN_WTU, rel=1e-12)             # log softplus(wᵀu) = wᵀu
    below = dict(params, u=np.array([[np.nextafter(MIN_WTU, -np.inf), 0.0]]))
    with pytest.raises(ValueError, match=r"wᵀu >= -700"):
        pf.reverse_kl(below, z0, pf.Gaussian([0.0, 0.0], [1.0, 1.0]))


@pytest.mark.parametrize("bad", [
    {"w": np.array([[1e-160, 0.0]])},                 # ‖w‖² underflows
    {"w": np.array([[1e-51, 1e-51]])},                # ‖w‖ below 1e-50
    {"u": np.array([[1e200, 1e200]]), "w": np.array([[1e200, -1e200]])},   # wᵀu would overflow
    {"b": np.array([1e101])},
])
def test_parameters_float64_cannot_compute_with_are_refused_by_name(bad):
    params = dict({"u": np.array([[0.5, 0.1]]), "w": np.array([[1.0, 0.0]]), "b": np.array([0.0])}, **bad)
    with pytest.raises(ValueError, match="params"):
        pf.sample(params, 5, rng=0)


# --- targets: what comes back is checked, what goes in is a copy ---------------------------------

class Keeper:
    """A target that keeps every array it is given (and scribbles on it afterwards)."""
    dim = 2

    def __init__(self):
        self.kept = []

    def energy(self, z):
        self.kept.append((z, z.copy()))
        return 0.5 * np.sum(z * z, axis=1)

    def grad(self, z):
        self.kept.append((z, z.copy()))
        return z.copy()


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_a_target_that_keeps_its_arrays_finds_them_unchanged(engine):
    target = Keeper()
    pf.fit(target, 3, 5, 16, rng=0, progress=False, engine=engine)
    assert len(target.kept) >= 5
    for z, copy in target.kept:
        np.testing.assert_array_equal(z, copy)


def test_reverse_kl_called_from_inside_a_target_does_not_corrupt_the_outer_call():
    inner_params = pf.init_params(2, 2, rng=5)

    class Nested(Keeper):
        def energy(self, z):
            pf.reverse_kl(inner_params, np.ones((7, 2)), pf.get_target("U2"))
            pf.fit(pf.get_target("U2"), 2, 2, 8, rng=0, progress=False, engine="fused")
            return super().energy(z)

    z0 = np.random.default_rng(0).standard_normal((32, 2))
    expected = pf.reverse_kl(GOOD, z0, Keeper())
    got = pf.reverse_kl(GOOD, z0, Nested())
    assert got[0] == expected[0]
    for k in "uwb":
        np.testing.assert_array_equal(got[1][k], expected[1][k])
    a = pf.fit(Keeper(), 3, 10, 16, rng=1, progress=False, engine="fused")[0]
    b = pf.fit(Nested(), 3, 10, 16, rng=1, progress=False, engine="fused")[0]
    np.testing.assert_array_equal(a["u"], b["u"])


@pytest.mark.parametrize("energy, error, word", [
    (lambda z: np.zeros((len(z), 1)), ValueError, "shape"),           # (N, 1) would broadcast
    (lambda z: np.zeros(len(z)) + 0j, TypeError, "real"),
    (lambda z: np.full(len(z), np.nan), ValueError, "NaN"),
    (lambda z: "energy", TypeError, "real"),
    (lambda z: np.zeros(len(z) + 1), ValueError, "shape"),
])
def test_a_misbehaving_target_is_named_by_every_function_that_evaluates_it(energy, error, word):
    class Bad:
        dim = 2

        def grad(self, z):
            return np.zeros_like(z)

    Bad.energy = staticmethod(energy)
    z0 = np.zeros((4, 2))
    for call in (lambda t: pf.reverse_kl(GOOD, z0, t), lambda t: pf.kl_divergence(GOOD, t, 10, rng=0, log_z=0.0),
                 lambda t: pf.importance_log_z(GOOD, t, 10, rng=0)):
        with pytest.raises(error, match=word) as info:
            call(Bad())
        assert "target.energy" in str(info.value)


def test_fit_with_complex_or_misshapen_energies_stops_at_the_first_step():
    class Complex(Keeper):
        def energy(self, z):
            return np.zeros(len(z), dtype=complex)

    with pytest.raises(TypeError, match="target.energy"):
        pf.fit(Complex(), 2, 5, 8, rng=0, progress=False)


# --- diagnostics use the flow's dimension and refuse what they cannot integrate -----------------

def test_kl_of_a_3d_flow_needs_log_z_and_is_right_with_it():
    params = pf.init_params(2, 3, rng=0)
    params["u"] = np.log(np.e - 1.0) * params["w"]                  # the identity: q = N(0, I)

    class Normal3D:                                                     # no dim attribute, no log_z
        def energy(self, z):
            return 0.5 * np.sum(z * z, axis=1)

        def grad(self, z):
            return z

    with pytest.raises(ValueError, match="log_z"):
        pf.kl_divergence(params, Normal3D(), 1000, rng=0)
    kl, se = pf.kl_divergence(params, Normal3D(), 1000, rng=0, log_z=1.5 * np.log(2 * np.pi))
    assert abs(kl) < 1e-12


def test_log_partition_refuses_a_density_too_narrow_for_its_grid():
    narrow = pf.Gaussian([0.01, 0.0], [1e-3, 1e-3])
    del narrow.log_z
    with pytest.raises(ValueError, match="spacing"):
        pf.log_partition(narrow, limit=1.0)
    wide = pf.Gaussian([0.3, -0.2], [0.5, 0.7])
    assert pf.log_partition(wide, limit=6.0) == pytest.approx(wide.log_z, abs=1e-9)


def test_kl_and_importance_sampling_keep_memory_bounded(monkeypatch):
    """A large n is drawn in chunks: reference.sample never sees more than a chunk."""
    seen = []
    original = reference.sample

    def spy(params, n, rng=None):
        seen.append(n)
        return original(params, n, rng)

    monkeypatch.setattr(reference, "sample", spy)
    pf.kl_divergence(GOOD, pf.get_target("U1"), 50_000, rng=0)
    pf.importance_log_z(GOOD, pf.get_target("U1"), 50_000, rng=0)
    assert max(seen) <= 8192 and sum(seen) == 100_000


def test_chunked_sampling_draws_exactly_what_one_draw_would():
    z, log_q = pf.sample(GOOD, 20_000, rng=3)
    z_one, log_q_one = reference.sample(GOOD, 20_000, np.random.default_rng(3))
    np.testing.assert_array_equal(z, z_one)
    np.testing.assert_array_equal(log_q, log_q_one)


# --- sizes and edges: a prompt error naming the argument ---------------------------------------

@pytest.mark.parametrize("call, word", [
    (lambda: pf.sample(GOOD, 10 ** 12), "n"),
    (lambda: pf.fit(pf.get_target("U1"), 2, 5, 10 ** 12, progress=False), "batch_size"),
    (lambda: pf.fit(pf.get_target("U1"), 2, 5, 10 ** 6, population=10 ** 3, progress=False), "batch_size"),
    (lambda: pf.fit(pf.get_target("U1"), 2, 5, 8, population=10 ** 9, progress=False), "population"),
    (lambda: pf.init_params(10 ** 30), "K"),
    (lambda: pf.init_params(10 ** 5, dim=10 ** 5), "K"),
    (lambda: pf.kl_divergence(GOOD, pf.get_target("U1"), 10 ** 30), "n"),
    (lambda: pf.reverse_kl(GOOD, np.zeros((4, 2)), pf.get_target("U1"), beta=10 ** 400), "beta"),
    (lambda: pf.Adam(lr=10 ** 400), "lr"),
    (lambda: pf.fit(pf.get_target("U1"), 2, 5, 8, lr=10 ** 400, progress=False), "lr"),
    (lambda: pf.numerical_gradient(lambda x: 0.0, np.zeros(3), h=0.0), "h"),
    (lambda: pf.rel_error(np.zeros(3), np.zeros(4)), "shape"),
    (lambda: pf.log_prob(GOOD, np.full((2, 2), 1e200)), "y"),
])
def test_sizes_and_edges_are_refused_by_name_before_any_allocation(call, word):
    with pytest.raises((ValueError, TypeError), match=word):
        call()


def test_adam_refuses_a_parameter_whose_shape_changed():
    adam, params = pf.Adam(), {"x": np.zeros(3)}
    adam.step(params, {"x": np.ones(3)})
    params["x"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"params\['x'\].*shape changed"):
        adam.step(params, {"x": np.ones(4)})


# --- files -------------------------------------------------------------------------------------

def test_load_refuses_a_fifo_and_a_device_without_reading(tmp_path):
    fifo = tmp_path / "flow.npz"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):                # (a read would block on the FIFO for ever)
        with pytest.raises(ValueError, match="not a regular file"):
            pf.load(path)
        with pytest.raises(ValueError, match="not a regular file"):
            pf.fit(pf.get_target("U1"), 2, 5, 8, resume=path, progress=False)


def _npy(shape_text, dtype="<f8"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape_text)
    header += " " * (63 - len(header) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


@pytest.mark.parametrize("shape_text", ["(-3, 2)", "(2**62, 2**62)", "(9223372036854775807, 3)", "('a', 2)", "(1.5, 2)"])
def test_load_refuses_hostile_npy_shapes_naming_the_path(tmp_path, shape_text):
    path = tmp_path / "bad.npz"
    shape_text = shape_text.replace("2**62", str(2 ** 62))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("u.npy", _npy(shape_text) + b"\0" * 64)
        for k in "wb":
            with zf.open(f"{k}.npy", "w") as f:
                np.save(f, GOOD[k])
    with pytest.raises(ValueError) as info:
        pf.load(path)
    assert str(path) in str(info.value)


def _checkpoint(tmp_path, **kw):
    ckpt = tmp_path / "run.ckpt"
    pf.fit(pf.get_target("U1"), 2, 4, 8, rng=0, progress=False, checkpoint=ckpt, checkpoint_every=2, **kw)
    return ckpt


def _rewrite_meta(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "meta.npy":
                import io as _io
                meta = json.loads(np.load(_io.BytesIO(data)).tobytes())
                text = edit(meta)
                buf = _io.BytesIO()
                np.save(buf, np.frombuffer(text.encode(), dtype=np.uint8))
                data = buf.getvalue()
            zout.writestr(info.filename, data)


@pytest.mark.parametrize("edit", [
    lambda m: json.dumps(dict(m, rng_state={"__ndarray__": [0] * 10, "dtype": "V18000000000"})),
    lambda m: "[" * 100_000 + "]" * 100_000,
    lambda m: json.dumps(dict(m, rng_state=dict(m["rng_state"], state={"state": 2 ** 300, "inc": 1}))),
    lambda m: json.dumps(dict(m, rng_state="PCG64")),
    lambda m: json.dumps(dict(m, adam_t=-5)),
    lambda m: json.dumps(dict(m, step=10 ** 30)),
])
def test_resume_refuses_hostile_checkpoint_metadata_naming_the_path(tmp_path, edit):
    ckpt = _checkpoint(tmp_path)
    bad = tmp_path / "bad.ckpt"
    _rewrite_meta(ckpt, bad, edit)
    with pytest.raises(ValueError) as info:
        pf.fit(pf.get_target("U1"), 2, 4, 8, resume=bad, progress=False)
    assert "bad.ckpt" in str(info.value)


def test_resume_refuses_another_target_and_params(tmp_path):
    ckpt = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match="target"):
        pf.fit(pf.get_target("U2"), 2, 4, 8, resume=ckpt, progress=False)
    with pytest.raises(ValueError, match="params"):
        pf.fit(pf.get_target("U1"), 2, 4, 8, resume=ckpt, params=GOOD, progress=False)
    with pytest.raises(ValueError, match="engine"):
        pf.fit(pf.get_target("U1"), 2, 4, 8, resume=ckpt, engine="fused", progress=False)


def test_a_checkpoint_in_a_missing_folder_fails_before_the_first_step(tmp_path):
    steps = []
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        pf.fit(pf.get_target("U1"), 2, 5, 8, checkpoint=tmp_path / "no" / "run.ckpt", progress=False,
               callback=lambda *a: steps.append(a))
    assert steps == []


def test_save_honours_the_umask_and_keeps_a_replaced_files_mode(tmp_path):
    old = os.umask(0o022)
    try:
        pf.save(tmp_path / "new.npz", GOOD)
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o644
        existing = tmp_path / "shared.npz"
        existing.write_bytes(b"old")
        os.chmod(existing, 0o664)
        pf.save(existing, GOOD)
        assert stat.S_IMODE(os.stat(existing).st_mode) == 0o664
    finally:
        os.umask(old)


def test_save_refuses_read_only_files_devices_folders_and_nul_bytes(tmp_path):
    ro = tmp_path / "ro.npz"
    ro.write_bytes(b"keep me")
    os.chmod(ro, 0o444)
    with pytest.raises(ValueError, match="read-only"):
        pf.save(ro, GOOD)
    assert ro.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="not a regular file"):
        pf.save(os.devnull, GOOD)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)                 # still the device
    with pytest.raises(ValueError, match="folder"):
        pf.save(tmp_path, GOOD)
    with pytest.raises(ValueError, match="NUL"):
        pf.save(str(tmp_path / "a\0b.npz"), GOOD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.npz"]


def test_a_full_disk_names_the_path_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as info:
        pf.save(tmp_path / "flow.npz", GOOD)
    assert "flow.npz" in str(info.value) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_crashed_writers_are_removed_and_never_accumulate(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".flow.npz.{dead}.tmp.npz"
    stale.write_bytes(b"half")
    pf.save(tmp_path / "flow.npz", GOOD)
    pf.save(tmp_path / "flow.npz", GOOD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.npz"]


# --- the demo --------------------------------------------------------------------------------

def run_demo(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, os.path.join(ROOT, "demo.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kw)


@pytest.mark.parametrize("args, word", [
    (["--seed", "-1"], "--seed"), (["--out", "fig.txt"], "--out"), (["--out", ""], "--out"),
    (["--out", "fig"], "--out"), (["--save-dir", ""], "--save-dir"), (["--K", "100000"], "--K"),
    (["--targets", "U1", "U1"], "--targets"), (["--K", "2", "2"], "--K"),
    (["--targets", "U1", "--layers-target", "U2"], "--layers-target"),
    (["--batch-size", "5000000"], "--batch-size"), (["--engine", "torch"], "--engine"),
])
def test_demo_refuses_flags_that_would_fail_later(args, word):
    res = run_demo(*args, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], res.stderr


def test_demo_refuses_a_read_only_save_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    res = run_demo("--quick", "--save-dir", str(ro), "--out", str(tmp_path / "f.png"), timeout=60)
    assert res.returncode == 2 and "--save-dir" in res.stderr


def test_demo_with_a_huge_learning_rate_reports_divergence_and_finishes(tmp_path):
    res = run_demo("--lr", "1e300", "--targets", "U1", "U2", "--K", "2", "--quick", "--out", str(tmp_path / "f.png"))
    assert res.returncode == 0, res.stderr
    assert "diverged at step" in res.stdout and (tmp_path / "f.png").exists()


def test_demo_ctrl_c_ends_in_one_line_with_status_130_and_no_orphans(tmp_path):
    before = set(_spawned())
    # Ctrl-C as a terminal delivers it: the demo starts with SIGINT's default disposition, which a
    # suite started as a background job (`pytest &`, nohup) would otherwise pass down as ignored
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "demo.py"), "--out", str(tmp_path / "f.png")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert eventually(lambda: set(_spawned()) - before)               # the workers run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err
    assert eventually(lambda: set(_spawned()) - before == set())
    assert not (tmp_path / "f.png").exists() or (tmp_path / "f.png").stat().st_size > 0


def test_demo_piped_into_head_still_writes_its_figures(tmp_path):
    out = tmp_path / "f.png"
    cmd = f"{sys.executable} {os.path.join(ROOT, 'demo.py')} --quick --targets U1 --K 2 --out {out} | head -1"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("Fitting")
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert out.exists() and (tmp_path / "f_training.png").exists()


def test_load_refuses_an_archive_listing_thousands_of_entries(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(2000):
            zf.writestr(f"x{i}.npy", b"")
    with pytest.raises(ValueError, match="2000 entries") as info:
        pf.load(path)
    assert str(path) in str(info.value)


def test_save_through_a_symlink_writes_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.npz"
    pf.save(real, GOOD)
    link = tmp_path / "link.npz"
    os.symlink(real, link)
    other = pf.init_params(3, 2, rng=9)
    pf.save(link, other)
    assert os.path.islink(link)
    np.testing.assert_array_equal(pf.load(real)["u"], other["u"])
