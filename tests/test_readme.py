"""The README's numbers come from the current code, and its commands are the ones CI runs."""

import os

from planarflow.tools.refresh_readme import ROOT, code_fingerprint

README = os.path.join(ROOT, "README.md")


def test_readme_numbers_were_generated_from_the_current_code():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert f"code fingerprint `{code_fingerprint()}`" in text, (
        "the code changed since README.md's numbers were generated: run "
        "`python -m planarflow.refresh_readme` and commit the result")


def test_ci_runs_the_readme_test_command_verbatim():
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    command = 'python -m pip install -e ".[test]" &&  python -m pytest'
    assert command in readme and command in ci
