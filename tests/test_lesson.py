"""The lessons as a teacher uses them: reference.py alone (with and without matplotlib), each
lesson copied with the files it needs running every function it defines, their notebooks in docs/
in step with them, and the whole Figure 3 from the lesson files copied to an empty folder.
Standard library only (json, re, subprocess): no notebook tool is needed to check the notebooks."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from planarflow.lab.refresh_readme import ROOT

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


def test_reference_py_alone_answers_help_without_training_and_refuses_arguments(tmp_path):
    shutil.copy(REFERENCE_PY, tmp_path / "reference.py")
    for flag in ("--help", "-h"):
        res = run_alone(tmp_path, "reference.py", flag)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("usage: python reference.py")
        assert "floor −log Z" not in res.stdout                        # no training step printed
        assert os.listdir(tmp_path) == ["reference.py"]                 # no picture: nothing ran
    res = run_alone(tmp_path, "reference.py", "--steps", "5")
    assert res.returncode != 0 and res.stderr.startswith("usage:") and res.stdout == ""


# Each lesson, the files it needs, and the edit of its constants that a teacher would make to
# run it in a second or two (the same code path, fewer steps).
LESSONS = {
    "reference.py": ((), [("16, 3000, 256,", "4, 200, 256,")]),
    "base.py": (("reference.py",), [("16, 3000, 256,", "4, 200, 256,")]),
    "path_gradient.py": (("reference.py", "base.py", "targets.py"),
                         [("16, 3000, 256, 200", "4, 200, 128, 20")]),
}

TRACE = """import ast, json, runpy, sys
lesson = sys.argv[1]
called = set()
def note(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.endswith(lesson):
        called.add(frame.f_code.co_name)
sys.argv = [lesson]
sys.setprofile(note)
runpy.run_path(lesson, run_name="__main__")
sys.setprofile(None)
tree = ast.parse(open(lesson, encoding="utf-8").read())
defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
print(json.dumps({"defined": sorted(defined), "not run": sorted(defined - called)}))
"""


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_copied_with_what_it_needs_runs_and_runs_every_function_it_defines(lesson, tmp_path):
    needs, edits = LESSONS[lesson]
    for name in needs:
        shutil.copy(os.path.join(ROOT, "planarflow", name), tmp_path / name)
    source = open(os.path.join(ROOT, "planarflow", lesson), encoding="utf-8").read()
    for old, new in edits:
        assert old in source
        source = source.replace(old, new)
    (tmp_path / lesson).write_text(source, encoding="utf-8")
    (tmp_path / "trace.py").write_text(TRACE, encoding="utf-8")
    res = run_alone(tmp_path, "trace.py", lesson, isolated=False)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["defined"] and report["not run"] == [], report
    assert "picture:" in res.stdout and any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_the_lessons_keep_to_what_a_lecture_can_use():
    """The core: at most 300 lines and 160 lines of code (not blank, comment or docstring); every
    lesson file: lines of at most 100 characters."""
    import ast

    source = open(REFERENCE_PY, encoding="utf-8").read()
    lines = source.splitlines()
    doc = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            doc |= set(range(body[0].lineno, body[0].end_lineno + 1))
    code = [i for i, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#") and i not in doc]
    assert len(lines) <= 300 and len(code) <= 160, (len(lines), len(code))
    for name in ("reference", "base", "path_gradient", "targets", "inverse", "diagnostics", "gradcheck", "figure3"):
        with open(os.path.join(ROOT, "planarflow", name + ".py"), encoding="utf-8") as f:
            long = [i for i, line in enumerate(f.read().splitlines(), 1) if len(line) > 100]
        assert long == [], (name, long)


@pytest.mark.parametrize("lesson", ["reference", "base", "path_gradient"])
def test_each_notebook_in_docs_is_its_lesson_with_a_title_headings_and_a_picture(lesson):
    """docs/<lesson>.ipynb (made by the refresher with docs/notebook.md's command) holds the
    lesson's code cells, exactly; opens with a markdown title cell; has a markdown cell for every
    section heading; and shows the executed run's picture."""
    with open(os.path.join(ROOT, "docs", lesson + ".ipynb"), encoding="utf-8") as f:
        nb = json.load(f)
    with open(os.path.join(ROOT, "planarflow", lesson + ".py"), encoding="utf-8") as f:
        script = percent_cells(f.read())
    cells = [(c["cell_type"], "".join(c["source"]).strip("\n")) for c in nb["cells"]]
    assert [src for kind, src in cells if kind == "code"] == [src for kind, src in script if kind == "code"], (
        f"docs/{lesson}.ipynb is out of step with planarflow/{lesson}.py: run python -m planarflow refresh-readme")
    assert cells[0][0] == "markdown" and cells[0][1].startswith("# ")
    headings = [src.splitlines()[0] for kind, src in cells if kind == "markdown" and src.startswith("## ")]
    script_headings = [src.splitlines()[0][2:] for kind, src in script if kind == "markdown" and src.startswith("# ## ")]
    assert headings == script_headings and headings[0].startswith("## 1.")
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_the_whole_figure_3_from_the_lesson_files_copied_to_an_empty_folder(tmp_path):
    for name in ("reference.py", "targets.py", "figure3.py"):
        shutil.copy(os.path.join(ROOT, "planarflow", name), tmp_path / name)
    res = run_alone(tmp_path, "figure3.py", "--K", "2", "4", "--steps", "40", "--out", "f.png", isolated=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert res.stdout.count("fitted, KL(q_K ‖ p) = ") == 8
    assert "planarflow" not in res.stderr
    help_text = run_alone(tmp_path, "figure3.py", "--help", isolated=False)
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage:")
