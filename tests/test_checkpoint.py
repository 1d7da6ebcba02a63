"""A run never loses its last good state: divergence is caught, checkpoints resume exactly."""


import numpy as np
import pytest

from planarflow import TrainingDiverged, fit, get_target, save


class Runaway:
    """U(z) = −exp(5‖z‖²): unbounded below, so the flow pushes samples outwards until U overflows
    (at ‖z‖ ≈ 12)."""

    dim = 2

    def energy(self, z):
        return -np.exp(5.0 * np.sum(z ** 2, axis=1))

    def grad(self, z):
        return -10.0 * np.exp(5.0 * np.sum(z ** 2, axis=1, keepdims=True)) * z


def test_divergence_stops_with_the_last_finite_parameters_and_advice(tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        fit(Runaway(), K=4, steps=5000, batch_size=64, lr=0.5, rng=0, progress=False, start="standard")
    err = info.value
    assert err.step > 0 and len(err.history["loss"]) == err.step
    assert all(np.all(np.isfinite(v)) for v in err.params.values())
    assert "learning rate" in str(err) and "anneal" in str(err)
    save(tmp_path / "last.npz", err.params)                          # and they can be saved


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    target = get_target("U1")
    kw = dict(K=4, steps=60, batch_size=32, lr=1e-2, lr_final=1e-3, anneal_steps=30, progress=False)
    full_params, full_history = fit(target, rng=7, **kw)

    ckpt = tmp_path / "run.ckpt"

    def crash_at_40(t, loss, beta):
        if t + 1 == 40:
            raise KeyboardInterrupt        # the session is stopped just after step 40's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(target, rng=7, checkpoint=ckpt, checkpoint_every=20, callback=crash_at_40, **kw)
    params, history = fit(target, resume=ckpt, **kw)
    for k in "uwb":
        np.testing.assert_array_equal(params[k], full_params[k])
    for k in ("loss", "beta", "lr"):
        np.testing.assert_array_equal(history[k], full_history[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]   # no temporaries left


def test_resume_refuses_other_settings_and_corrupt_checkpoints(tmp_path):
    target = get_target("U2")
    ckpt = tmp_path / "run.ckpt"
    fit(target, K=2, steps=10, batch_size=8, rng=0, progress=False, checkpoint=ckpt, checkpoint_every=5)
    with pytest.raises(ValueError, match="batch_size"):
        fit(target, K=2, steps=10, batch_size=16, resume=ckpt, progress=False)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(ValueError, match="bad.ckpt"):
        fit(target, K=2, steps=10, batch_size=8, resume=bad, progress=False)
    with pytest.raises(FileNotFoundError):
        fit(target, K=2, steps=10, batch_size=8, resume=tmp_path / "none.ckpt", progress=False)


def test_a_run_from_the_mode_resumes_exactly_with_its_frame_and_base(tmp_path):
    """A user's target: the flow has a learnable base and is trained in the Laplace frame; the
    checkpoint holds both, and the resumed run ends where the uninterrupted one does."""
    from planarflow import Gaussian
    target = Gaussian(np.array([1e4, -3.0]), np.array([50.0, 1e-3]))
    kw = dict(K=3, steps=40, batch_size=32, lr=1e-2, progress=False, engine="fused")
    full_params, full_history = fit(target, rng=3, **kw)
    ckpt = tmp_path / "run.ckpt"

    def crash_at_20(t, loss, beta):
        if t + 1 == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(target, rng=3, checkpoint=ckpt, checkpoint_every=10, callback=crash_at_20, **kw)
    params, history = fit(target, resume=ckpt, **kw)
    assert set(params) == set(full_params) == {"u", "w", "b", "mu", "log_sigma", "lower"}
    for k in params:
        np.testing.assert_array_equal(params[k], full_params[k])
    np.testing.assert_array_equal(history["loss"], full_history["loss"])


def test_a_checkpoint_whose_metadata_contradicts_its_arrays_is_refused(tmp_path):
    """Metadata K = 2 over arrays of 3 layers, or Adam's step count 0 after 20 steps: refused,
    naming the path, never silently resumed."""
    import json
    import zipfile
    target = get_target("U2")
    ckpt = tmp_path / "run.ckpt"
    fit(target, K=3, steps=20, batch_size=8, rng=0, progress=False, checkpoint=ckpt, checkpoint_every=10)

    def rewrite(path, **changes):
        with zipfile.ZipFile(ckpt) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        arrays = {n[:-4]: np.load(__import__("io").BytesIO(b)) for n, b in members.items()}
        meta = json.loads(arrays["meta"].tobytes().decode())
        meta.update(changes)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(path, **arrays)

    rewrite(tmp_path / "k.npz", K=2)
    with pytest.raises(ValueError, match="k.npz"):
        fit(target, K=2, steps=20, batch_size=8, resume=tmp_path / "k.npz", progress=False)
    rewrite(tmp_path / "t.npz", adam_t=0)
    with pytest.raises(ValueError, match="Adam"):
        fit(target, K=3, steps=20, batch_size=8, resume=tmp_path / "t.npz", progress=False)
