"""The lesson as a teacher uses it: reference.py alone (with and without matplotlib), its notebook
in docs/ in step with it, and the whole Figure 3 from the lesson files copied to an empty folder.
Standard library only (json, re, subprocess): no notebook tool is needed to check the notebook."""

import json
import os
import re
import shutil
import subprocess
import sys

from planarflow.lab.refresh_readme import NOTEBOOK, ROOT

REFERENCE_PY = os.path.join(ROOT, "planarflow", "reference.py")


def run_alone(folder, *args, code=None, isolated=True):
    """python -I in ``folder`` (no PYTHONPATH: nothing but the copied files and the standard
    library, NumPy and matplotlib). isolated=False for a script that imports the files beside it
    (-I keeps the script's folder off sys.path), as a teacher runs it: python figure3.py."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, *(["-I"] if isolated else []), *(["-c", code] if code else []), *args]
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600, env=env)


def percent_cells(text):
    """(kind, source) of each cell of a percent-format script: split at lines starting with
    '# %%'; '[markdown]' on that line makes a markdown cell, whose source is its comment lines."""
    parts = re.split(r"^# %%(.*)$", text, flags=re.M)
    cells = [("code", parts[0])]
    for header, body in zip(parts[1::2], parts[2::2]):
        cells.append(("markdown" if "[markdown]" in header else "code", body))
    return [(kind, src.strip("\n")) for kind, src in cells if src.strip()]


def test_reference_py_alone_without_matplotlib_trains_and_says_why_there_is_no_picture(tmp_path):
    shutil.copy(REFERENCE_PY, tmp_path / "reference.py")
    blocked = ("import sys, runpy; sys.modules['matplotlib'] = None; "       # import matplotlib fails
               "runpy.run_path('reference.py', run_name='__main__')")
    res = run_alone(tmp_path, code=blocked)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    last_loss = float(re.findall(r"loss \(mean of the last 250\) = ([+-][\d.]+)", out)[-1])
    assert -1.8775 - 0.01 < last_loss < -1.8775 + 0.05              # the floor −log Z, nearly reached
    assert "matplotlib is not installed: no picture" in out
    assert os.listdir(tmp_path) == ["reference.py"]


def test_reference_py_alone_with_matplotlib_draws_its_picture(tmp_path):
    """The lesson's last cell, on a shorter run (the copy's constants edited as a teacher would)."""
    source = open(REFERENCE_PY, encoding="utf-8").read()
    short = source.replace("K, STEPS, BATCH, LR, LR_FINAL, ANNEAL = 16, 3000, 256,",
                           "K, STEPS, BATCH, LR, LR_FINAL, ANNEAL = 4, 300, 256,")
    assert short != source
    (tmp_path / "reference.py").write_text(short, encoding="utf-8")
    res = run_alone(tmp_path, "reference.py")
    assert res.returncode == 0, res.stderr
    assert "picture: reference_u1.png" in res.stdout
    assert (tmp_path / "reference_u1.png").stat().st_size > 10_000


def test_reference_py_alone_answers_help_without_training(tmp_path):
    shutil.copy(REFERENCE_PY, tmp_path / "reference.py")
    for flag in ("--help", "-h"):
        res = run_alone(tmp_path, "reference.py", flag)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("Planar normalizing flows") and "python reference.py" in res.stdout
        assert "floor −log Z" not in res.stdout                        # no training step printed
        assert os.listdir(tmp_path) == ["reference.py"]                 # no picture: nothing ran


def test_the_notebook_in_docs_is_reference_py_with_headings_and_a_picture():
    """docs/reference.ipynb (made by the README refresher) holds reference.py's code cells,
    exactly; a markdown cell for every section heading; and the executed run's picture."""
    with open(os.path.join(ROOT, NOTEBOOK), encoding="utf-8") as f:
        nb = json.load(f)
    with open(REFERENCE_PY, encoding="utf-8") as f:
        script = percent_cells(f.read())
    cells = [(c["cell_type"], "".join(c["source"]).strip("\n")) for c in nb["cells"]]
    assert [src for kind, src in cells if kind == "code"] == [src for kind, src in script if kind == "code"], (
        "docs/reference.ipynb is out of step with planarflow/reference.py: run python -m planarflow refresh-readme")
    headings = [src.splitlines()[0] for kind, src in cells if kind == "markdown" and src.startswith("## ")]
    assert [h.split(".")[0] for h in headings] == [f"## {i}" for i in range(1, 12)]
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("KL(q_K ‖ p)" in "".join(o.get("text", "")) for o in outputs)


def test_the_whole_figure_3_from_the_lesson_files_copied_to_an_empty_folder(tmp_path):
    for name in ("reference.py", "targets.py", "figure3.py"):
        shutil.copy(os.path.join(ROOT, "planarflow", name), tmp_path / name)
    res = run_alone(tmp_path, "figure3.py", "--K", "2", "4", "--steps", "40", "--out", "f.png", isolated=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert res.stdout.count("fitted") == 8
    assert "planarflow" not in res.stderr
    help_text = run_alone(tmp_path, "figure3.py", "--help", isolated=False)
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage:")
