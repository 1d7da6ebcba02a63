"""The runnable examples under docs/ run as a reader runs them (python docs/NAME.py) and say what
they promise: a broken import or a changed call fails here, not in a reader's hands."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "docs", "*.py")))
CHECKED = "the gradient agrees with central differences"
RELIABLE = "reliable (k̂ ≤ 0.7)"
PROMISES = {"own_density.py": [CHECKED, RELIABLE],
            "eight_schools.py": [CHECKED, RELIABLE, "against the exact posterior"],
            "constrained.py": [RELIABLE, "lambda", "by quadrature"],
            "numpyro_model.py": [CHECKED, RELIABLE, "theta[7]"]}
NEEDS = {"numpyro_model.py": "numpyro"}


def test_every_example_is_listed_with_what_it_promises():
    assert EXAMPLES == sorted(PROMISES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_runs_and_says_what_it_promises(name):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{name} needs {NEEDS[name]}, which is not installed here")
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "docs", name)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for promise in PROMISES[name]:
        assert promise in done.stdout, (promise, done.stdout[-2000:])
