"""Real posteriors with exact answers: the yardstick for a researcher's use of planarflow.

Each function returns a ``Target`` (library/target.py: ``dim``, ``energy``, ``grad``,
``names``) on an unconstrained space, and the exact posterior means and standard deviations of
its coordinates — in closed form, or by quadrature in one or two dimensions — so that an estimate
can be judged by how far it is from the truth, in posterior standard deviations.

    eight_schools()         Rubin's (1981) hierarchical model, non-centred: μ, log τ, η₁…η₈ (d = 10);
                            a half-Cauchy prior on τ gives log τ a long left tail
    regression(...)         y = β₀ + β₁·x + ε, ε ~ N(0, σ²), flat priors on β and log σ (d = 3):
                            an exact Student-t posterior for β and a scaled inverse-χ² for σ²;
                            its arguments make it a regression in dollars (β₁ ≈ −6·10⁴ ± 10⁴),
                            one on an uncentred predictor (correlation −0.99) or one known to 10⁻³
    wide_regression()       ten correlated predictors and an intercept, the same exact truth (d = 12)
    autoregression()        an AR(5) series, y_t on its five lags: the same exact truth (d = 7)
    logistic()              a logistic regression, three predictors, N(0, 5²) priors (d = 4); truth
                            by importance sampling from a Student-t at the mode, 4·10⁵ draws
    banana()                x₁ ~ N(0, 3²), x₂ | x₁ ~ N(0.1(x₁² − 9), 1): curved, with exact moments

``energy_only=True`` gives the same target without its gradient (planarflow then differentiates
it by finite differences).
"""

import numpy as np

from ..library.target import Target

SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])      # Rubin (1981), table 1
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(grid=(1400, 1600), energy_only=False):
    """The eight schools, non-centred: θⱼ = μ + τ·ηⱼ, yⱼ ~ N(θⱼ, σⱼ²), ηⱼ ~ N(0, 1), μ ~ N(0, 5²),
    τ ~ half-Cauchy(0, 5), with coordinates z = (μ, log τ, η₁, …, η₈):

        U = Σⱼ ½((yⱼ − μ − τηⱼ)/σⱼ)² + ½ Σⱼ ηⱼ² + ½(μ/5)² + log(1 + (τ/5)²) − log τ

    (the last term is the Jacobian of τ = e^{log τ}). Truth: integrating the ηⱼ out gives
    yⱼ ~ N(μ, σⱼ² + τ²), so p(μ, log τ | y) is a 2-D density summed on a grid, and given (μ, τ)
    each ηⱼ is normal with mean V·(yⱼ − μ)/(σⱼ²·τ) and variance V/τ², V = 1/(1/σⱼ² + 1/τ²).
    Returns (target, mean (10,), sd (10,)).
    """
    y, s2 = SCHOOLS_Y, SCHOOLS_SIGMA ** 2

    def energy_and_grad(z):
        mu, log_tau, eta = z[:, 0], z[:, 1], z[:, 2:]
        tau = np.exp(log_tau)
        r = (y - mu[:, None] - tau[:, None] * eta) / s2                  # (N, 8)
        U = (0.5 * (r * r * s2).sum(axis=1) + 0.5 * (eta * eta).sum(axis=1) + 0.5 * (mu / 5.0) ** 2
             + np.log1p((tau / 5.0) ** 2) - log_tau)
        g = np.empty_like(z)
        g[:, 0] = -r.sum(axis=1) + mu / 25.0
        g[:, 1] = -tau * (r * eta).sum(axis=1) + 2.0 * tau ** 2 / (25.0 + tau ** 2) - 1.0
        g[:, 2:] = -tau[:, None] * r + eta
        return U, g

    def energy(z):
        mu, log_tau, eta = z[:, 0], z[:, 1], z[:, 2:]
        tau = np.exp(log_tau)
        r = (y - mu[:, None] - tau[:, None] * eta) / SCHOOLS_SIGMA
        return (0.5 * (r * r).sum(axis=1) + 0.5 * (eta * eta).sum(axis=1) + 0.5 * (mu / 5.0) ** 2
                + np.log1p((tau / 5.0) ** 2) - log_tau)

    target = (Target(10, energy, name="eight schools") if energy_only else
              Target(10, energy_and_grad=energy_and_grad, name="eight schools"))
    target.names = ["mu", "log_tau"] + [f"eta[{j + 1}]" for j in range(8)]
    target.model = ("eight schools", {"y": y, "sigma": SCHOOLS_SIGMA})          # for lab/peer_nuts.py
    # truth: p(μ, s) on a grid, s = log τ, the ηⱼ integrated out analytically
    mu = np.linspace(-40.0, 50.0, grid[0])
    s = np.linspace(-25.0, 7.0, grid[1])
    M, S = np.meshgrid(mu, s, indexing="ij")
    tau2 = np.exp(2.0 * S)
    var = s2[:, None, None] + tau2                                      # (8, mu, s)
    log_p = (-0.5 * (M / 5.0) ** 2 - np.log1p(tau2 / 25.0) + S
             - 0.5 * (((y[:, None, None] - M) ** 2) / var + np.log(var)).sum(axis=0))
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    tau = np.sqrt(tau2)
    V = 1.0 / (1.0 / s2[:, None, None] + 1.0 / tau2)
    eta_mean = V * (y[:, None, None] - M) / (s2[:, None, None] * tau)    # E[ηⱼ | μ, τ, y]
    eta_m2 = eta_mean ** 2 + V / tau2
    mean = np.concatenate([[np.sum(w * M), np.sum(w * S)], (w * eta_mean).sum(axis=(1, 2))])
    m2 = np.concatenate([[np.sum(w * M * M), np.sum(w * S * S)], (w * eta_m2).sum(axis=(1, 2))])
    return target, mean, np.sqrt(m2 - mean ** 2)


def digamma(x):
    """ψ(x) for x > 0: the recurrence ψ(x) = ψ(x + 1) − 1/x up to x ≥ 10, then the asymptotic series."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    x2 = 1.0 / (x * x)
    return acc + np.log(x) - 0.5 / x - x2 * (1 / 12 - x2 * (1 / 120 - x2 * (1 / 252 - x2 * (1 / 240 - x2 / 132))))


def trigamma(x):
    """ψ′(x) for x > 0: ψ′(x) = ψ′(x + 1) + 1/x² up to x ≥ 10, then the asymptotic series."""
    acc = 0.0
    while x < 10.0:
        acc += 1.0 / (x * x)
        x += 1.0
    x2 = 1.0 / (x * x)
    return acc + 1.0 / x + 0.5 * x2 + (1.0 / x) * x2 * (1 / 6 - x2 * (1 / 30 - x2 * (1 / 42 - x2 / 30)))


CASES = {
    # name: (n, x mean, x sd, β₀, β₁, σ)
    "dollars": (20, 2.0, 0.5, 350_000.0, -61_000.0, 19_000.0),       # price against distance (km)
    "uncentred": (500, 70.0, 10.0, 3.0, 0.5, 13.4),                 # corr(β₀, β₁) ≈ −0.99
    "tight": (200, 0.0, 1.0, 0.7, -0.25, 0.014),                    # sd(β) ≈ 10⁻³
}


def regression(case, seed=0, energy_only=False):
    """y = β₀ + β₁·x + ε with data drawn once (``seed``), flat priors on β and on s = log σ:

        U(β, s) = n·s + Σᵢ (yᵢ − β₀ − β₁xᵢ)²/(2e^{2s})

    Truth (X = [1 x], ν = n − 2, β̂ least squares, s̄² = ‖y − Xβ̂‖²/ν): β ~ t_ν(β̂, s̄²(XᵀX)⁻¹), so
    E β = β̂ and Cov β = ν/(ν − 2)·s̄²(XᵀX)⁻¹; ν·s̄²/σ² ~ χ²_ν, so log σ = ½(log ν s̄² − log χ²_ν) with
    E log χ²_ν = ψ(ν/2) + log 2 and Var log χ²_ν = ψ′(ν/2). Returns (target, mean (3,), sd (3,), corr of β).
    """
    n, xm, xs, b0, b1, sigma = CASES[case]
    rng = np.random.default_rng(seed)
    x = xm + xs * rng.standard_normal(n)
    y = b0 + b1 * x + sigma * rng.standard_normal(n)

    def energy_and_grad(z):
        r = y - z[:, :1] - z[:, 1:2] * x                                  # (N, n)
        inv = np.exp(-2.0 * z[:, 2])
        rr = (r * r).sum(axis=1)
        U = n * z[:, 2] + 0.5 * rr * inv
        g = np.stack([-r.sum(axis=1) * inv, -(r * x).sum(axis=1) * inv, n - rr * inv], axis=1)
        return U, g

    def energy(z):
        r = y - z[:, :1] - z[:, 1:2] * x
        return n * z[:, 2] + 0.5 * (r * r).sum(axis=1) * np.exp(-2.0 * z[:, 2])

    target = (Target(3, energy, name=f"regression ({case})") if energy_only else
              Target(3, energy_and_grad=energy_and_grad, name=f"regression ({case})"))
    target.names = ["beta0", "beta1", "log_sigma"]
    target.model = ("linear", {"X": np.column_stack([np.ones(n), x]), "y": y})
    X = np.column_stack([np.ones(n), x])
    A = X.T @ X
    beta = np.linalg.solve(A, X.T @ y)
    nu = n - 2
    s2 = np.sum((y - X @ beta) ** 2) / nu
    cov = nu / (nu - 2.0) * s2 * np.linalg.inv(A)
    mean = np.array([beta[0], beta[1], 0.5 * (np.log(nu * s2) - digamma(nu / 2.0) - np.log(2.0))])
    sd = np.array([np.sqrt(cov[0, 0]), np.sqrt(cov[1, 1]), 0.5 * np.sqrt(trigamma(nu / 2.0))])
    return target, mean, sd, cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])


def linear_model(X, y, name, names, energy_only=False):
    """y = Xβ + ε, ε ~ N(0, σ²), flat priors on β and s = log σ, in z = (β, s):

        U(β, s) = n·s + ‖y − Xβ‖²/(2e^{2s}),    ∇_β U = −Xᵀr/e^{2s},  ∂U/∂s = n − ‖r‖²/e^{2s}

    with the exact posterior of ``regression`` for p columns (ν = n − p). Returns (target, mean, sd)."""
    n, p = X.shape

    def energy_and_grad(z):
        r = y - z[:, :p] @ X.T                                             # (N, n)
        inv = np.exp(-2.0 * z[:, p])
        rr = (r * r).sum(axis=1)
        g = np.empty_like(z)
        g[:, :p] = -(r @ X) * inv[:, None]
        g[:, p] = n - rr * inv
        return n * z[:, p] + 0.5 * rr * inv, g

    def energy(z):
        r = y - z[:, :p] @ X.T
        return n * z[:, p] + 0.5 * (r * r).sum(axis=1) * np.exp(-2.0 * z[:, p])

    target = (Target(p + 1, energy, name=name) if energy_only else
              Target(p + 1, energy_and_grad=energy_and_grad, name=name))
    target.names = list(names) + ["log_sigma"]
    target.model = ("linear", {"X": X, "y": y})
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    nu = n - p
    s2 = np.sum((y - X @ beta) ** 2) / nu
    cov = nu / (nu - 2.0) * s2 * np.linalg.inv(X.T @ X)
    mean = np.append(beta, 0.5 * (np.log(nu * s2) - digamma(nu / 2.0) - np.log(2.0)))
    sd = np.append(np.sqrt(np.diag(cov)), 0.5 * np.sqrt(trigamma(nu / 2.0)))
    return target, mean, sd


def wide_regression(seed=0, energy_only=False, p=10, n=400):
    """Ten predictors whose pairwise correlation is 0.8, and an intercept far from 0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * 0.45 + rng.standard_normal((n, 1)) * 0.9            # corr 0.8
    X = np.column_stack([np.ones(n), x])
    y = X @ np.append(40.0, rng.normal(0.0, 2.0, p)) + 3.0 * rng.standard_normal(n)
    return linear_model(X, y, "regression (10 predictors)", ["beta0"] + [f"beta{i + 1}" for i in range(p)],
                        energy_only)


def autoregression(seed=0, energy_only=False, lags=5, n=200):
    """An AR(5) series simulated once; the model regresses y_t on 1, y_{t−1}, …, y_{t−5}."""
    rng = np.random.default_rng(seed)
    phi = np.array([0.5, -0.3, 0.2, 0.1, -0.1])
    series = np.zeros(n + 100)
    for t in range(lags, series.size):
        series[t] = 1.0 + phi @ series[t - lags:t][::-1] + 0.5 * rng.standard_normal()
    series = series[100:]
    X = np.column_stack([np.ones(n - lags)] + [series[lags - k:n - k] for k in range(1, lags + 1)])
    return linear_model(X, series[lags:], "AR(5)", ["alpha"] + [f"phi{k}" for k in range(1, lags + 1)], energy_only)


def logistic(seed=0, energy_only=False, n=300, draws=400_000):
    """y ~ Bernoulli(logistic(β₀ + β·x)), three predictors, βⱼ ~ N(0, 5²):

        U(β) = Σᵢ (softplus(ηᵢ) − yᵢηᵢ) + ‖β‖²/50,   ∇U = Xᵀ(logistic(η) − y) + β/25,   η = Xβ

    Truth: the mode and the Hessian there by Newton's method, then importance sampling from a
    Student-t (ν = 5) with 1.2² times the Laplace covariance — 4·10⁵ draws, an effective sample of
    about 3·10⁵ (a mean's Monte-Carlo error 0.002 posterior sds): an independent route to the
    means and sds, which planarflow's flow plays no part in."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ np.array([-1.0, 1.5, -0.8, 0.3])))).astype(float)

    def energy_and_grad(z):
        eta = z @ X.T                                                        # (N, n)
        e = np.exp(-np.abs(eta))                   # one exponential for softplus(η) and logistic(η)
        U = (np.maximum(eta, 0.0) + np.log1p(e) - y * eta).sum(axis=1) + (z * z).sum(axis=1) / 50.0
        logistic = np.where(eta >= 0.0, 1.0, e) / (1.0 + e)
        return U, (logistic - y) @ X + z / 25.0

    target = (Target(4, lambda z: energy_and_grad(z)[0], name="logistic regression") if energy_only else
              Target(4, energy_and_grad=energy_and_grad, name="logistic regression"))
    target.names = ["beta0", "beta1", "beta2", "beta3"]
    target.model = ("logistic", {"X": X, "y": y})
    mode = np.zeros(4)
    for _ in range(50):                                                      # Newton, to the last digit
        p_ = 1.0 / (1.0 + np.exp(-X @ mode))
        H = (X * (p_ * (1 - p_))[:, None]).T @ X + np.eye(4) / 25.0
        mode = mode - np.linalg.solve(H, energy_and_grad(mode[None])[1][0])
    L = np.linalg.cholesky(np.linalg.inv(H)) * 1.2
    draw_rng = np.random.default_rng(seed + 1)
    t = draw_rng.standard_normal((draws, 4)) / np.sqrt(draw_rng.chisquare(5, (draws, 1)) / 5)
    log_t = -4.5 * np.log1p((t * t).sum(axis=1) / 5)                        # Student-t, up to a constant
    log_w_all = []
    for i in range(0, draws, 100_000):                                       # in chunks: η is (chunk, n)
        z = mode + t[i:i + 100_000] @ L.T
        log_w = -energy_and_grad(z)[0] - log_t[i:i + 100_000]
        log_w_all.append(log_w)
    log_w = np.concatenate(log_w_all)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    z = mode + t @ L.T
    mean = w @ z
    sd = np.sqrt(w @ (z - mean) ** 2)
    return target, mean, sd


def banana(energy_only=False, scale=3.0, bend=0.1):
    """x₁ ~ N(0, 3²) and x₂ | x₁ ~ N(0.1·(x₁² − 9), 1): U = x₁²/18 + ½(x₂ − 0.1(x₁² − 9))². Exact:
    E x = 0, sd x₁ = 3, sd x₂ = √(1 + 0.1²·Var x₁²) = √(1 + 0.01·2·81) = 1.62."""
    def energy_and_grad(z):
        r = z[:, 1] - bend * (z[:, 0] ** 2 - scale ** 2)
        U = 0.5 * (z[:, 0] / scale) ** 2 + 0.5 * r * r
        return U, np.column_stack([z[:, 0] / scale ** 2 - 2.0 * bend * z[:, 0] * r, r])

    target = (Target(2, lambda z: energy_and_grad(z)[0], name="banana") if energy_only else
              Target(2, energy_and_grad=energy_and_grad, name="banana"))
    target.names = ["x1", "x2"]
    target.model = ("banana", {"scale": scale, "bend": bend})
    return target, np.zeros(2), np.array([scale, np.sqrt(1.0 + bend ** 2 * 2.0 * scale ** 4)])


def benchmark_set(energy_only=False):
    """The eight posteriors a researcher's fit is measured on (python -m planarflow benchmark
    --versus-nuts): [(name, target, true mean, true sd)]."""
    cases = [("eight schools", *eight_schools(energy_only=energy_only))]
    cases += [(f"regression, {c}", *regression(c, energy_only=energy_only)[:3]) for c in ("dollars", "uncentred", "tight")]
    cases += [("regression, 10 predictors", *wide_regression(energy_only=energy_only)),
              ("AR(5)", *autoregression(energy_only=energy_only)),
              ("logistic regression", *logistic(energy_only=energy_only)),
              ("banana", *banana(energy_only=energy_only))]
    return cases


def judge(estimate, mean, sd):
    """How far estimates are from the truth: (max |mean − truth| in posterior sds, max |sd/true sd − 1|)."""
    return float(np.max(np.abs(estimate.mean - mean) / sd)), float(np.max(np.abs(estimate.sd / sd - 1.0)))


# --- posteriors whose tails can hide from k̂ (posterior's tail check is measured on them) ---------

def funnel(d=5, scale=1.5, energy_only=False):
    """Neal's funnel: v ~ N(0, scale²), xᵢ | v ~ N(0, eᵛ) for i = 1 … d − 1, coordinates (v, x):

        U = v²/(2·scale²) + Σᵢ xᵢ²/(2eᵛ) + (d − 1)·v/2

    Exact: every mean 0, sd v = scale, sd xᵢ = √E[eᵛ] = e^{scale²/4}. The neck (v ≪ 0, x ≈ 0) is
    where a flow's tail falls short."""
    k = d - 1

    def energy_and_grad(z):
        v, x = z[:, 0], z[:, 1:]
        e = np.exp(-v)
        s2 = (x * x).sum(axis=1)
        U = 0.5 * (v / scale) ** 2 + 0.5 * s2 * e + 0.5 * k * v
        return U, np.column_stack([v / scale ** 2 - 0.5 * s2 * e + 0.5 * k, x * e[:, None]])

    target = (Target(d, lambda z: energy_and_grad(z)[0], name="funnel") if energy_only else
              Target(d, energy_and_grad=energy_and_grad, name="funnel"))
    target.names = ["v"] + [f"x[{i + 1}]" for i in range(k)]
    return target, np.zeros(d), np.array([scale] + [np.exp(scale ** 2 / 4.0)] * k)


def eight_schools_centred(grid=(1400, 1600), energy_only=False):
    """The eight schools, centred: coordinates z = (μ, log τ, θ₁, …, θ₈), θⱼ ~ N(μ, τ²) directly —
    the funnel that MCMC users reparameterise away:

        U = Σⱼ ½((yⱼ − θⱼ)/σⱼ)² + Σⱼ ½((θⱼ − μ)/τ)² + 8·log τ + ½(μ/5)² + log(1 + (τ/5)²) − log τ

    Truth as for eight_schools(): p(μ, log τ | y) on a grid, and given (μ, τ) each θⱼ is normal
    with variance V = 1/(1/σⱼ² + 1/τ²) and mean V·(yⱼ/σⱼ² + μ/τ²)."""
    y, s2 = SCHOOLS_Y, SCHOOLS_SIGMA ** 2

    def energy_and_grad(z):
        mu, log_tau, theta = z[:, 0], z[:, 1], z[:, 2:]
        t2 = np.exp(-2.0 * log_tau)                                      # 1/τ²
        dev = theta - mu[:, None]
        res = (theta - y) / s2
        tau2 = np.exp(2.0 * log_tau)
        U = (0.5 * ((theta - y) ** 2 / s2).sum(axis=1) + 0.5 * t2 * (dev * dev).sum(axis=1) + 7.0 * log_tau
             + 0.5 * (mu / 5.0) ** 2 + np.log1p(tau2 / 25.0))
        g = np.empty_like(z)
        g[:, 0] = -t2 * dev.sum(axis=1) + mu / 25.0
        g[:, 1] = -t2 * (dev * dev).sum(axis=1) + 7.0 + 2.0 * tau2 / (25.0 + tau2)
        g[:, 2:] = res + t2[:, None] * dev
        return U, g

    target = (Target(10, lambda z: energy_and_grad(z)[0], name="eight schools, centred") if energy_only else
              Target(10, energy_and_grad=energy_and_grad, name="eight schools, centred"))
    target.names = ["mu", "log_tau"] + [f"theta[{j + 1}]" for j in range(8)]
    mu = np.linspace(-40.0, 50.0, grid[0])
    s = np.linspace(-25.0, 7.0, grid[1])
    M, S = np.meshgrid(mu, s, indexing="ij")
    tau2 = np.exp(2.0 * S)
    var = s2[:, None, None] + tau2
    log_p = (-0.5 * (M / 5.0) ** 2 - np.log1p(tau2 / 25.0) + S
             - 0.5 * (((y[:, None, None] - M) ** 2) / var + np.log(var)).sum(axis=0))
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    V = 1.0 / (1.0 / s2[:, None, None] + 1.0 / tau2)
    t_mean = V * (y[:, None, None] / s2[:, None, None] + M / tau2)
    mean = np.concatenate([[np.sum(w * M), np.sum(w * S)], (w * t_mean).sum(axis=(1, 2))])
    m2 = np.concatenate([[np.sum(w * M * M), np.sum(w * S * S)], (w * (t_mean ** 2 + V)).sum(axis=(1, 2))])
    return target, mean, np.sqrt(m2 - mean ** 2)


def latent_gp(n=8, length=0.3, noise=0.3, seed=0, energy_only=False, grid=4000):
    """A latent Gaussian process, non-centred: f = α·L·η at n inputs on [0, 1] (L Lᵀ the squared-
    exponential kernel of length 0.3, with 10⁻⁹ jitter), yᵢ ~ N(fᵢ, 0.3²), log α ~ N(0, 1),
    η ~ N(0, I); coordinates z = (log α, η₁ … ηₙ):

        U = ½ Σᵢ ((yᵢ − α(Lη)ᵢ)/0.3)² + ½‖η‖² + ½(log α)²

    The amplitude's log has a long left tail (small α explains the data as noise). Truth: η
    integrated out, y ~ N(0, α²K + 0.3²I), so p(log α | y) is a 1-D grid; given α, η | y is
    normal with precision P = I + α²LᵀL/0.3² and mean P⁻¹·αLᵀy/0.3²."""
    x = np.linspace(0.0, 1.0, n)
    K = np.exp(-0.5 * ((x[:, None] - x[None, :]) / length) ** 2) + 1e-9 * np.eye(n)
    L = np.linalg.cholesky(K)
    rng = np.random.default_rng(seed)
    y = L @ rng.standard_normal(n) * 0.7 + noise * rng.standard_normal(n)
    s2 = noise ** 2

    def energy_and_grad(z):
        a = np.exp(z[:, 0])
        eta = z[:, 1:]
        f = a[:, None] * (eta @ L.T)                                     # (N, n)
        r = (y - f) / s2
        U = 0.5 * ((y - f) ** 2).sum(axis=1) / s2 + 0.5 * (eta * eta).sum(axis=1) + 0.5 * z[:, 0] ** 2
        return U, np.column_stack([-(f * r).sum(axis=1) + z[:, 0], -a[:, None] * (r @ L) + eta])

    target = (Target(n + 1, lambda z: energy_and_grad(z)[0], name="latent GP") if energy_only else
              Target(n + 1, energy_and_grad=energy_and_grad, name="latent GP"))
    target.names = ["log_alpha"] + [f"eta[{i + 1}]" for i in range(n)]
    s = np.linspace(-15.0, 5.0, grid)
    log_p, means, m2s = np.empty(grid), np.empty((grid, n)), np.empty((grid, n))
    for i, si in enumerate(s):
        a2 = np.exp(2.0 * si)
        C = a2 * K + s2 * np.eye(n)
        sign, logdet = np.linalg.slogdet(C)
        log_p[i] = -0.5 * si * si - 0.5 * logdet - 0.5 * y @ np.linalg.solve(C, y)
        P = np.eye(n) + a2 * (L.T @ L) / s2
        cov = np.linalg.inv(P)
        means[i] = cov @ (np.exp(si) * (L.T @ y) / s2)
        m2s[i] = means[i] ** 2 + np.diag(cov)
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    mean = np.concatenate([[w @ s], w @ means])
    m2 = np.concatenate([[w @ (s * s)], w @ m2s])
    return target, mean, np.sqrt(m2 - mean ** 2)


def tail_set(energy_only=False):
    """Posteriors whose tails can hide from k̂: [(name, target, true mean, true sd)]."""
    return [("funnel, d = 5", *funnel(energy_only=energy_only)),
            ("funnel, d = 10, scale 2", *funnel(10, 2.0, energy_only=energy_only)),
            ("eight schools, centred", *eight_schools_centred(energy_only=energy_only)),
            ("latent GP", *latent_gp(energy_only=energy_only))]
