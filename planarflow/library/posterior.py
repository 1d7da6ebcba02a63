"""Posterior estimates from a fitted flow: the flow's samples, reweighted towards the target.

A flow fitted by reverse KL is a proposal, not the posterior: reverse KL is mode-seeking, so its
samples under-disperse (standard deviations of 0.8 of the truth are common even for a good fit).
Importance sampling corrects that. With zᵢ ~ q and log wᵢ = −U(zᵢ) − log q(zᵢ),

    E_p[f] ≈ Σᵢ w̃ᵢ·f(zᵢ),    w̃ = the Pareto-smoothed weights (diagnostics.psis), Σ w̃ᵢ = 1

and k̂, the Pareto shape of the largest weights, says whether to trust it: k̂ ≤ 0.7, the
estimates are reliable; above, a few draws decide them and ``posterior`` warns loudly
(UnreliablePosteriorWarning). Alongside: the effective sample size ESS = 1/Σ w̃ᵢ², each mean's
Monte-Carlo standard error √(Σ w̃ᵢ²·(f(zᵢ) − E[f])²) (the self-normalised estimator's, to first
order), weighted quantiles from the weighted empirical distribution function, and resampling —
draws with probabilities w̃, an unweighted sample of the posterior to hand to any other tool.
"""

import warnings

import numpy as np

from .. import diagnostics
from .validation import MAX_ENTRIES, as_int, check_size, describe, make_rng


class UnreliablePosteriorWarning(UserWarning):
    """k̂ > 0.7: the importance weights are too heavy-tailed for the estimates to be trusted."""


class TailWarning(UserWarning):
    """A wider proposal finds mass the flow misses: standard deviations too small, which k̂ cannot see."""


WIDEN = 3.0            # the tail check's base: ½N(0, I) + ½N(0, c²I), c = 1 + WIDEN/√d (its draws reach
                       # WIDEN base units further out, in any d; measured: benchmark --tails)
TAIL_CHANGE = 0.05     # …flags an sd that changes by more than this fraction (or a mean by this many sds)
TAIL_Z = 4.0           # …and by more than this many standard errors of the difference (2d comparisons:
                       # noise alone passes one of them with probability < 2d·6.3e-5, 0.3% in d = 26)


def widening(d):
    """c of the tail check's wider base in d dimensions."""
    return 1.0 + WIDEN / np.sqrt(d)


def scaled_deviations(samples, mean):
    """(x − m)/s and s, with s = max |x − m| of each column (1 where it is 0): the second and fourth
    moments below are formed from numbers ≤ 1 and multiplied back by s, so values up to 1e308 give
    their sds, not an overflow to inf."""
    dev = samples - mean
    scale = np.max(np.abs(dev), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return dev / scale, scale


class Posterior:
    """Importance-weighted estimates under the target from a flow's samples (see the module doc).

    Attributes
    ----------
    samples : ndarray (n, d)     the flow's draws — or, with a ``transform``, its values there
                                 (n, m): the quantities every estimate below is of
    z : ndarray (n, d)           the flow's draws, in the target's coordinates
    weights : ndarray (n,)       their Pareto-smoothed, normalised importance weights
    k_hat : float                the Pareto shape: reliable when ≤ 0.7
    reliable : bool              k_hat ≤ 0.7
    ess : float                  1/Σ w², the effective sample size
    mean, sd, mcse : ndarray (d,)   weighted means, standard deviations, and the means' Monte-Carlo
                                    standard errors (m of each with a transform)
    names : list of d (or m) strings
    """

    THRESHOLD = 0.7

    def __init__(self, samples, log_weights, k_hat, names=None, z=None):
        self.samples = samples
        self.z = samples if z is None else z
        self.weights = np.exp(log_weights - np.logaddexp.reduce(log_weights))
        self.k_hat = float(k_hat)
        self.reliable = bool(self.k_hat <= self.THRESHOLD)
        self.ess = float(1.0 / np.sum(self.weights ** 2))
        self.n, self.dim = samples.shape
        self.names = list(names) if names is not None else [f"x[{i}]" for i in range(self.dim)]
        self.mean = self.weights @ samples                 # (d,); a second pass removes its rounding
        self.mean += (self.weights @ (samples - self.mean)) / self.weights.sum()   # (~n·ε: a constant's sd)
        dev, scale = scaled_deviations(samples, self.mean)
        self.sd = scale * np.sqrt(self.weights @ (dev * dev))
        self.mcse = scale * np.sqrt((self.weights ** 2) @ (dev * dev))
        self.tails = None                  # the tail check's findings (check_tails), when it ran

    def expect(self, f):
        """E_p[f(z)] ≈ Σ w̃ᵢ·f(zᵢ) for a vectorised f: (n, d) -> (n,) or (n, m); returns a float or (m,)."""
        values, scalar = values_at(f, self.samples, "f")
        out = self.weights @ values
        return float(out[0]) if scalar else out

    def quantile(self, q, f=None):
        """Weighted quantiles of each coordinate (or of f(z)): the inverse of the weighted empirical
        distribution function, each draw's weight centred on it. q: a number or array in [0, 1];
        returns (len(q), d) — or (d,) for a single q."""
        if isinstance(q, (str, bytes)) or np.asarray(q).dtype.kind not in "iuf":
            raise TypeError(f"q: expected a number or an array of numbers in [0, 1], got {describe(q)}")
        q_arr = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if q_arr.ndim != 1 or q_arr.size == 0 or not np.all((q_arr >= 0) & (q_arr <= 1)):
            raise ValueError(f"q: expected numbers in [0, 1] (a number or a 1-D array), got {q!r}")
        values = self.samples if f is None else values_at(f, self.samples, "f")[0]
        out = np.empty((q_arr.size, values.shape[1]))
        for j in range(values.shape[1]):
            order = np.argsort(values[:, j], kind="stable")
            cw = np.cumsum(self.weights[order]) - 0.5 * self.weights[order]
            out[:, j] = np.interp(q_arr, cw, values[order, j])
        return out[0] if np.ndim(q) == 0 else out

    def resample(self, m, rng=None):
        """m draws with replacement, with probabilities w̃: an unweighted sample (m, d) of the posterior."""
        m = as_int(m, "m", maximum=MAX_ENTRIES)
        check_size("m", m, self.dim)
        idx = make_rng(rng).choice(self.n, size=m, p=self.weights)
        return self.samples[idx]

    def summary(self):
        """A table: mean, sd, Monte-Carlo se of the mean, 5%, 50% and 95% of each coordinate."""
        qs = self.quantile([0.05, 0.5, 0.95])
        width = max(8, max(len(n) for n in self.names))
        verdict = ("reliable (k̂ ≤ 0.7)" if self.reliable else
                   "UNRELIABLE: k̂ > 0.7, a few draws decide these numbers; fit longer, with more layers, "
                   "or check the target")
        lines = [f"{self.n} draws of the flow, Pareto-smoothed importance weights: k̂ = {self.k_hat:.2f}, "
                 f"ESS = {self.ess:.0f} — {verdict}"]
        if self.tails is not None:
            lines.append(tail_line(self.tails, self.names))
        lines += [
                  f"{'':>{width}} {'mean':>12} {'sd':>11} {'mcse':>9} {'5%':>12} {'50%':>12} {'95%':>12}"]
        for i, name in enumerate(self.names):
            lines.append(f"{name:>{width}} {self.mean[i]:12.5g} {self.sd[i]:11.4g} {self.mcse[i]:9.2g} "
                         f"{qs[0, i]:12.5g} {qs[1, i]:12.5g} {qs[2, i]:12.5g}")
        return "\n".join(lines)

    def __repr__(self):
        return self.summary()


def values_at(f, z, name):
    """A user's function at the draws z (n, d): f(z) as (n, m) float64, checked, and whether f gave
    one number a draw. Booleans count (E[1{…}] is a probability); complex or text values are never cast."""
    if not callable(f):
        raise TypeError(f"{name}: expected a function of the draws z (n, d) returning (n,) or (n, m) numbers, "
                        f"got {describe(f)}")
    raw = f(z.copy())
    try:
        values = np.asarray(raw)
    except Exception as exc:
        raise TypeError(f"{name}: expected an array of real numbers, got {describe(raw)} ({exc})") from None
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers (or booleans) from it, got {describe(values)}; a "
                        f"complex or text value is never cast")
    if values.ndim not in (1, 2) or values.shape[0] != z.shape[0] or values.size == 0:
        raise ValueError(f"{name}: expected values of shape ({z.shape[0]},) or ({z.shape[0]}, m ≥ 1) for draws "
                         f"of shape {z.shape}, got {values.shape}; it is called once with all the draws")
    scalar = values.ndim == 1
    values = values.astype(np.float64).reshape(z.shape[0], -1)
    if not np.all(np.isfinite(values)):
        bad = np.argmax(~np.isfinite(values).all(axis=1))
        raise ValueError(f"{name}: returned NaN or infinite values, e.g. at the draw "
                         f"{np.array2string(z[bad], precision=4, max_line_width=200)}")
    return values, scalar


def sd_errors(post):
    """The Monte-Carlo standard error of each weighted sd, to first order (the delta method):
    √(Σ w̃ᵢ²((xᵢ − m)² − s²)²)/(2s), formed from deviations scaled to ≤ 1 (scaled_deviations)."""
    dev, scale = scaled_deviations(post.samples, post.mean)
    s = post.sd / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        return scale * np.sqrt((post.weights ** 2) @ (dev * dev - s * s) ** 2) / (2.0 * s)


def constant(post):
    """Columns whose values are one number to rounding (sd ≤ 64 ulp of their largest magnitude): a
    constant has no tails, and the ratio of two rounding errors is no evidence of any."""
    return post.sd <= 64 * np.finfo(float).eps * np.max(np.abs(post.samples), axis=0)


def tail_line(tails, names):
    """The summary's sentence on the tail check."""
    if not tails["compared"].any():
        return "tail check: nothing to compare (every quantity is constant)."
    if tails["flagged"]:
        j = tails["worst"]
        return (f"TAILS FALL SHORT (TailWarning): with a wider base, sd({names[j]}) changes by "
                f"{tails['sd_change'][j]:+.1%} and mean({names[j]}) by {tails['mean_shift'][j]:+.2f} sd.")
    j = int(np.argmax(np.where(tails["compared"], np.abs(tails["sd_change"]), -1.0)))
    return (f"tail check: a wider base agrees within its noise (largest change: sd({names[j]}) "
            f"{tails['sd_change'][j]:+.1%}).")


def check_tails(post, wide):
    """Compare ``post`` with ``wide``, the same estimates from the flow with a wider base: where an sd
    (or a mean) differs by more than TAIL_CHANGE — a relative change, or in sds — and by more than
    TAIL_Z standard errors of the difference, the flow misses mass there. Both are consistent
    estimates of the same numbers, so only a flow whose tails fall short of the target's makes them
    differ beyond their noise — and k̂ may not see it: weights are heavy only where the flow draws.
    (The wider estimate's own k̂ is not a criterion: measured, it exceeds 0.7 on right fits.)
    A quantity constant to rounding under either (``constant``) is not compared: its entries are 0.
    Sets ``post.tails`` (a dict) and warns (TailWarning)."""
    compared = ~(constant(post) | constant(wide))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        se = np.hypot(sd_errors(post), sd_errors(wide))
        change = np.where(compared, wide.sd / post.sd - 1.0, 0.0)
        z_sd = np.where(compared, np.abs(wide.sd - post.sd) / se, 0.0)
        shift = np.where(compared, (wide.mean - post.mean) / post.sd, 0.0)
        z_mean = np.where(compared, np.abs(wide.mean - post.mean) / np.hypot(post.mcse, wide.mcse), 0.0)
    flagged_sd = (np.abs(change) > TAIL_CHANGE) & (z_sd > TAIL_Z)
    flagged_mean = (np.abs(shift) > TAIL_CHANGE) & (z_mean > TAIL_Z)
    flagged = flagged_sd | flagged_mean
    j = int(np.argmax(np.where(flagged, np.abs(change) + np.abs(shift), -1.0)))
    post.tails = {"flagged": bool(flagged.any()), "worst": j if flagged.any() else None,
                  "compared": compared, "sd_change": change, "mean_shift": shift, "z_sd": z_sd,
                  "z_mean": z_mean, "wide": wide}
    if post.tails["flagged"]:
        warnings.warn(f"posterior: the flow's tails fall short of the target's, which k̂ cannot see — with a "
                      f"wider base the sd of {post.names[j]} is {change[j]:+.0%} and its mean {shift[j]:+.2f} sd "
                      f"different ({max(z_sd[j], z_mean[j]):.0f} standard errors). Trust these estimates less: "
                      f"fit with more layers and steps, reparameterise the model (a funnel: non-centred), or "
                      f"check that marginal another way; post.tails['wide'] holds the wider estimates.",
                      TailWarning, stacklevel=3)
    return post.tails


def posterior(samples, log_q, energy, names=None, transform=None, quiet=False):
    """Posterior from the flow's samples (n, d), their log q (n,) and the target's energy there
    (n,); with ``transform``, of its values at the samples."""
    with np.errstate(over="ignore", invalid="ignore"):
        log_w = -energy - log_q
    if np.any(np.isnan(log_w)) or np.any(log_w == np.inf):
        raise ValueError("target.energy: −inf or NaN at draws of the flow; the importance weights are undefined")
    if np.all(log_w == -np.inf):
        raise ValueError("target.energy: +inf at every draw of the flow (zero density): nothing to weight")
    finite = np.isfinite(log_w)
    smoothed = np.full(log_w.shape, -np.inf)
    smoothed[finite], k_hat = diagnostics.psis(log_w[finite]) if finite.sum() >= 21 else (log_w[finite], np.inf)
    values = samples if transform is None else values_at(transform, samples, "transform")[0]
    if names is not None and len(names) != values.shape[1]:
        what = "the transform's values" if transform is not None else "coordinates"
        raise ValueError(f"names: expected {values.shape[1]} strings, one for each of {what}, got {len(names)}")
    result = Posterior(values, smoothed, k_hat, names, z=samples)
    if not result.reliable and not quiet:
        warnings.warn(f"posterior: k̂ = {k_hat:.2f} > 0.7 — the flow is not close enough to the target for "
                      f"importance sampling: these estimates (ESS {result.ess:.0f} of {result.n}) cannot be "
                      f"trusted. Fit longer, with more layers, or check the target.",
                      UnreliablePosteriorWarning, stacklevel=3)
    return result
