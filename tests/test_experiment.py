"""The experiment runner: every K has a recipe, the KL-vs-K command writes what it says."""

import os
import subprocess
import sys

import numpy as np
import pytest

import planarflow as pf
from planarflow.lab import recipes, report, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", recipes.RECIPES)
def test_every_K_from_1_to_64_has_a_recipe_within_the_size_limits(name):
    for K in range(1, 65):
        job = dict(recipes.recipe(K, name=name), K=K)
        runner.check_job(job)
        assert job["steps"] >= 1 and job["batch_size"] >= 1


def test_the_reference_recipe_is_the_pytorch_implementations():
    rec = recipes.recipe(8, name="reference")
    assert (rec["steps"], rec["batch_size"], rec["lr"], rec["lr_final"], rec["anneal_steps"]) == (20000, 4096, 1e-2, None, 0)
    start = recipes.uniform_start(3, np.random.default_rng(0))
    assert all(np.all((v >= 0) & (v < 1)) for v in start.values())


def result(name, K, seed, kl, recipe="planarflow"):
    return {"name": name, "K": K, "seed": seed, "kl": kl, "recipe": recipe}


def test_the_doubling_check_reports_every_case_where_more_layers_did_worse(capsys):
    results = [result("U1", 1, 0, 0.8), result("U1", 2, 0, 0.3), result("U1", 4, 0, 0.315),
               result("U2", 1, 0, 0.5), result("U2", 2, 0, 0.2), result("U2", 4, 0, 0.1)]
    report.check_monotone(results, [0], [1, 2, 4])
    out = capsys.readouterr().out
    assert "in 3 of 4 cases" in out and "U1 seed 0: K = 2 → 4: 0.3000 → 0.3150" in out


def test_the_reference_check_uses_the_median_over_the_reference_seeds(capsys):
    results = ([result("U4", 8, s, kl, "reference") for s, kl in enumerate([0.08, 0.10, 0.20])]
               + [result("U4", 8, s, kl) for s, kl in enumerate([0.09, 0.10, 0.125])])
    report.check_against_reference(results)                       # no allowance: at or below 0.10
    out = capsys.readouterr().out
    assert "2 of 3 fits at or below the median" in out and "0.1000" in out and "0.1250  ✗" in out


def test_kl_vs_k_command_prints_the_table_saves_loadable_flows_and_draws_the_figure(tmp_path):
    out, save_dir = tmp_path / "kl.png", tmp_path / "flows"
    res = subprocess.run([sys.executable, "-m", "planarflow", "experiment", "--kl-vs-k", "--K", "1", "2",
                          "--seeds", "0", "--quick", "--save-dir", str(save_dir), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "Doubling K" in res.stdout and "KL (nats) ± standard error, ESS/n and k̂" in res.stdout
    for name in ("U1", "U2", "U3", "U4"):
        assert f"planarflow     {name}   2" in res.stdout
        for K in (1, 2):
            params = pf.load(save_dir / f"{name}_K{K}_seed0.npz")
            assert params["u"].shape == (K, 2)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, word", [(["--seeds", "-1"], "--seeds"), (["--K", "0"], "--K"),
                                        (["--K", "2", "2"], "--K"), (["--recipe", "torch"], "--recipe"),
                                        (["--kl-vs-k", "--out", "/no/such/dir/x.png"], "--out"),
                                        (["--out", "kl.png"], "--kl-vs-k")])         # a figure nothing draws
def test_experiment_refuses_bad_flags_before_any_work(args, word):
    res = subprocess.run([sys.executable, "-m", "planarflow", "experiment", *args], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2 and word in res.stderr and res.stdout == ""
