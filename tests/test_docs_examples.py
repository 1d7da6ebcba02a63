"""The runnable examples under docs/ run as a reader runs them (python docs/NAME.py) and say what
they promise: a broken import or a changed call fails here, not in a reader's hands."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.py")))


def test_there_are_examples_to_run():
    assert {os.path.basename(p) for p in EXAMPLES} >= {"own_density.py", "eight_schools.py"}


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_each_example_runs_and_reports_a_reliable_posterior(path):
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the gradient agrees with central differences" in done.stdout
    assert "reliable (k̂ ≤ 0.7)" in done.stdout, done.stdout[-2000:]
