"""Hundreds of seeded random parameter draws across scales, through every public function:
no NaN or inf, no warning, and the invertibility constraint wᵀû > −1 always."""


import numpy as np
import pytest

import planarflow as pf

pytestmark = pytest.mark.filterwarnings("error")


def random_flow(rng):
    K = int(rng.integers(1, 12))
    d = int(rng.integers(1, 5))
    scale_u, scale_w, scale_b = 10.0 ** rng.uniform(-3, 2, size=3)
    w = rng.standard_normal((K, d)) * scale_w * 10.0 ** rng.uniform(-5, 0, size=(K, 1))
    return {"u": rng.standard_normal((K, d)) * scale_u, "w": w,
            "b": rng.standard_normal(K) * scale_b}, d


def test_random_flows_at_every_scale_give_finite_results_without_warnings():
    rng = np.random.default_rng(2024)
    for _ in range(300):
        params, d = random_flow(rng)
        target = pf.Gaussian(rng.standard_normal(d), 10.0 ** rng.uniform(-1, 1, d))
        z0 = rng.standard_normal((16, d)) * 10.0 ** rng.uniform(-2, 3)
        uh = pf.u_hat(params["u"], params["w"])
        _, sp, _ = pf.u_hat_forward(params["u"], params["w"])
        assert np.all(sp > 0)                                    # 1 + wᵀû > 0: invertible
        assert np.all(np.sum(params["w"] * uh, axis=1) > -1.0 - 1e-9)
        zK, sum_logdet, caches = pf.flow_forward(params, z0)
        dz0, grads = pf.flow_backward(np.ones_like(zK), np.ones_like(sum_logdet), caches)
        loss, g = pf.reverse_kl(params, z0, target, beta=float(rng.uniform(0.01, 1.0)))
        z, log_q = pf.sample(params, 32, rng)
        lp = pf.log_prob(params, z)
        z_back = pf.inverse(params, z)
        log_z, ess = pf.importance_log_z(params, target, 64, rng)
        kl, se = pf.kl_divergence(params, target, 64, rng)
        for x in (zK, sum_logdet, dz0, *grads.values(), loss, *g.values(), z, log_q, lp, z_back, log_z, ess, kl, se):
            assert np.all(np.isfinite(x))
        assert 0 < ess <= 1 + 1e-12


def test_random_two_d_flows_on_the_paper_targets():
    rng = np.random.default_rng(7)
    targets = [pf.get_target(n, box=b) for n in ("U1", "U2", "U3", "U4") for b in (None, 4.0)]
    for i in range(200):
        params, _ = random_flow(rng)
        K = params["u"].shape[0]
        params = {"u": rng.standard_normal((K, 2)) * 10 ** rng.uniform(-2, 1),
                  "w": rng.standard_normal((K, 2)) * 10 ** rng.uniform(-4, 1),
                  "b": rng.standard_normal(K) * 10 ** rng.uniform(-2, 3)}
        z0 = rng.standard_normal((32, 2)) * 10 ** rng.uniform(-1, 2)
        loss, g = pf.reverse_kl(params, z0, targets[i % len(targets)])
        assert np.isfinite(loss) and all(np.all(np.isfinite(v)) for v in g.values())
