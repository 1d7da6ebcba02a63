"""Regenerate every number and picture in README.md and docs/ from the commands that print them.

    python -m planarflow refresh-readme            # run from the repository's top folder

Each generated block sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in the page
``BLOCKS`` names, and is replaced by the output of the command recorded with it (a page is
written as soon as its block is made, so an interrupted refresh keeps what it finished).
docs/reference.ipynb, base.ipynb and path_gradient.ipynb, the lessons as executed notebooks, are
made by the command docs/notebook.md gives (``make_notebooks``; jupytext, nbconvert and ipykernel,
from the optional extra ``refresh``). Every page with
generated blocks also records a fingerprint of the code (every .py file of planarflow/, docs/*.py
and demo.py); tests/test_readme.py fails when the code has changed since the numbers were
generated, so they are never stale and never typed by hand.
"""

import glob
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (the page that holds the block, the command whose output fills it, run from ROOT)
BLOCKS = {   # timed blocks first (run them on a quiet machine), then the long experiments
    "demo": ("README.md", ["python", "demo.py", "--out", "docs/figure3.png"]),
    "benchmark": ("docs/recipe.md", ["python", "-m", "planarflow", "benchmark"]),
    "posteriors": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--posteriors"]),
    "placement": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--placement"]),
    "versus-nuts": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--versus-nuts"]),
    "stopping": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--stopping"]),
    "energy-only": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--energy-only"]),
    "tails": ("docs/researchers.md", ["python", "-m", "planarflow", "benchmark", "--tails"]),
    "own-density": ("README.md", ["python", "docs/own_density.py"]),
    "eight-schools": ("docs/researchers.md", ["python", "docs/eight_schools.py"]),
    "constrained": ("docs/models.md", ["python", "docs/constrained.py"]),
    "numpyro-model": ("docs/models.md", ["python", "docs/numpyro_model.py"]),
    "exercises": ("docs/exercises.md", ["python", "-m", "planarflow", "exercises"]),
    "spread": ("docs/recipe.md", ["python", "-m", "planarflow", "experiment", "--seeds", "0", "1", "2", "3", "4", "5"]),
    "kl-vs-k": ("docs/kl-vs-k.md", ["python", "-m", "planarflow", "experiment", "--kl-vs-k", "--recipe", "planarflow",
                                    "reference", "--seeds", "0", "1", "2", "--out", "docs/kl_vs_k.png"]),
}

# name -> (the page, a file whose code, after its docstring, the page shows in the block)
SOURCES = {"eight-schools-code": ("docs/researchers.md", "docs/eight_schools.py"),
           "own-density-code": ("README.md", "docs/own_density.py"),
           "constrained-code": ("docs/models.md", "docs/constrained.py"),
           "numpyro-model-code": ("docs/models.md", "docs/numpyro_model.py")}

PAGES = sorted({page for page, _ in BLOCKS.values()})     # each carries the fingerprint


def code_fingerprint(root=ROOT):
    """sha256 over the package's modules and demo.py (names and contents), first 16 hex digits."""
    h = hashlib.sha256()
    files = sorted(glob.glob(os.path.join(root, "planarflow", "**", "*.py"), recursive=True)
                   + glob.glob(os.path.join(root, "docs", "*.py"))) + [os.path.join(root, "demo.py")]
    for path in files:
        if os.path.basename(path) == "refresh_readme.py":
            continue
        h.update(os.path.relpath(path, root).replace(os.sep, "/").encode())
        with open(path, "rb") as f:
            h.update(f.read().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:16]


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run([sys.executable] + cmd[1:], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONHASHSEED="0"))
    sys.stderr.write(res.stderr[-2000:])
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {res.returncode}")
    print(res.stdout)
    return res.stdout.rstrip("\n")


def replace_block(text, name, body):
    pattern = re.compile(rf"(<!-- begin {name} -->\n)(.*?)(<!-- end {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no block '{name}' to fill")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)


def fill(page, name, body):
    """Put ``body`` in the block ``name`` of ``page`` (relative to ROOT), written atomically."""
    from ..library.files import atomic_output

    path = os.path.join(ROOT, page)
    with open(path, encoding="utf-8") as f:
        text = replace_block(f.read(), name, body)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


LESSONS = ("reference", "base", "path_gradient")        # each made into docs/<name>.ipynb
NOTEBOOK = "docs/reference.ipynb"
NOTEBOOK_COMMAND = ["jupytext", "--to", "ipynb", "--set-kernel", "python3", "--execute"]   # + <lesson>.py


def make_notebooks(root=ROOT):
    """docs/<lesson>.ipynb for each lesson file: the route docs/notebook.md gives a teacher,
    verbatim — in a temporary folder holding copies of the lesson files, ``jupytext --to ipynb
    --set-kernel python3 --execute <lesson>.py`` — so that each notebook carries its printed numbers
    and its picture. The tools come from the optional extra ``refresh`` (setup.cfg)."""
    import shutil
    import tempfile

    from ..library.files import atomic_output

    if shutil.which("jupytext") is None:
        raise SystemExit('the notebooks need jupytext, nbconvert and ipykernel: python -m pip install -e ".[refresh]"')
    with tempfile.TemporaryDirectory() as folder:
        for name in ("reference", "base", "path_gradient", "targets"):
            shutil.copy(os.path.join(root, "planarflow", name + ".py"), folder)
        for name in LESSONS:
            print(f"$ {' '.join(NOTEBOOK_COMMAND)} {name}.py", flush=True)
            res = subprocess.run(NOTEBOOK_COMMAND + [f"{name}.py"], cwd=folder, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"{name}.py as a notebook failed:\n{res.stderr[-3000:]}")
            with atomic_output(os.path.join(root, "docs", name + ".ipynb")) as tmp:
                shutil.copy(os.path.join(folder, name + ".ipynb"), tmp)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m planarflow refresh-readme",
        description="Regenerate the numbers and pictures of README.md and docs/ (run from the repository's top "
                    "folder; it runs every command the pages name, the six-seed experiments taking most of "
                    "the time): every generated block, the code the pages show, the figures "
                    "in docs/, the lesson's notebook, and the code fingerprint that tests/test_readme.py checks.")
    parser.add_argument("blocks", nargs="*", metavar="BLOCK",
                        help=f"regenerate only these blocks ({', '.join(BLOCKS)}, or notebook: the "
                             f"lessons' notebooks in docs/); the fingerprint is then left as it is")
    args = parser.parse_args(argv)
    unknown = [b for b in args.blocks if b not in BLOCKS and b != "notebook"]
    if unknown:
        parser.error(f"unknown block {unknown[0]!r}; choose from {', '.join(BLOCKS)}, notebook")
    for page in PAGES + ["demo.py"]:
        path = os.path.join(ROOT, page)
        if not os.path.isfile(path):
            parser.error(f"{path} not found: run this from a checkout of the repository")
        writable = page == "demo.py" or os.access(path, os.W_OK)
        if not writable or not os.access(os.path.dirname(path), os.W_OK):
            parser.error(f"{path} (or its folder) is not writable")
    names = args.blocks
    from . import peer_jax, peer_nuts
    for block, peer, what in (("benchmark", peer_jax, "JAX"), ("versus-nuts", peer_nuts, "NumPyro"),
                              ("numpyro-model", peer_nuts, "NumPyro")):
        if (not names or block in names) and not peer.available():
            parser.error(f"the {block} block compares with {what}, which is not installed here: "
                         f"pip install -e \".[compare]\" (the maintainer's extra)")
    for name, (page, source_path) in SOURCES.items():      # code the pages show, copied from its file
        with open(os.path.join(ROOT, source_path), encoding="utf-8") as f:
            source = f.read().split('"""\n', 1)[-1].strip("\n")       # without the module docstring
        fill(page, name, f"```python\n{source}\n```")
    for name, (page, cmd) in BLOCKS.items():
        if not names or name in names:
            fill(page, name, f"```\n$ {' '.join(cmd)}\n{run(cmd)}\n```")
    if not names or "notebook" in names:
        make_notebooks()
    if not names:                  # a partial refresh leaves the fingerprint (and the test) alone
        for page in PAGES:
            fill(page, "fingerprint", f"Numbers above were generated from code fingerprint `{code_fingerprint()}` "
                                      f"by `python -m planarflow refresh-readme`.")
