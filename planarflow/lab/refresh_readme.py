"""Regenerate every number and picture in README.md from the commands that print them.

    python -m planarflow refresh-readme            # run from the repository's top folder

Each generated block of README.md sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
and is replaced by the output of the command recorded with it. docs/reference.ipynb, the lesson
as an executed notebook, is made from planarflow/reference.py (``make_notebook``; jupytext and
nbclient, from the optional extra ``refresh``). The README also records a
fingerprint of the code (every .py file of planarflow/, docs/*.py and demo.py); tests/test_readme.py fails when the code
has changed since the numbers were generated, so they are never stale and never typed by hand.
"""

import glob
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> the command whose output fills the block (run from ROOT)
COMMANDS = {
    "demo": ["python", "demo.py", "--out", "docs/figure3.png"],
    "benchmark": ["python", "-m", "planarflow", "benchmark"],
    "kl-vs-k": ["python", "-m", "planarflow", "experiment", "--kl-vs-k", "--recipe", "planarflow", "reference",
                "--seeds", "0", "1", "2", "--out", "docs/kl_vs_k.png"],
    "exercises": ["python", "-m", "planarflow", "exercises"],
    "placement": ["python", "-m", "planarflow", "benchmark", "--placement"],
    "posteriors": ["python", "-m", "planarflow", "benchmark", "--posteriors"],
    "eight-schools": ["python", "docs/eight_schools.py"],
    "spread": ["python", "-m", "planarflow", "experiment", "--seeds", "0", "1", "2", "3", "4", "5"],
}


# name -> a file whose code (after its docstring) the README shows in the block
SOURCES = {"eight-schools-code": "docs/eight_schools.py"}


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
        raise SystemExit(f"README.md has no block '{name}'")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)


NOTEBOOK = "docs/reference.ipynb"


def make_notebook(root=ROOT):
    """docs/reference.ipynb: planarflow/reference.py as a notebook (jupytext), executed (nbclient)
    in a temporary folder, so that it carries its printed numbers and its picture. The tools come
    from the optional extra ``refresh`` (setup.cfg); nothing else in planarflow needs them."""
    import tempfile

    try:
        import jupytext
        import nbclient
        import nbformat
    except ImportError as exc:
        raise SystemExit(f"the notebook needs the refresher's extra tools ({exc.name} is missing): "
                         f"python -m pip install -e \".[refresh]\"") from None
    from ..library.files import atomic_output

    print("$ jupytext --to ipynb planarflow/reference.py; execute it (nbclient)", flush=True)
    nb = jupytext.read(os.path.join(root, "planarflow", "reference.py"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory() as folder:
        nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": folder}}).execute()
    with atomic_output(os.path.join(root, NOTEBOOK)) as tmp:
        nbformat.write(nb, tmp)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m planarflow refresh-readme",
        description="Regenerate README.md's numbers and pictures (run from the repository's top folder; "
                    "about half an hour): every generated block, the code it shows, the figures in docs/, and "
                    "the code fingerprint that tests/test_readme.py checks.")
    parser.add_argument("blocks", nargs="*", metavar="BLOCK",
                        help=f"regenerate only these blocks ({', '.join(COMMANDS)}, or notebook: "
                             f"{NOTEBOOK}); the fingerprint is then left as it is")
    args = parser.parse_args(argv)
    unknown = [b for b in args.blocks if b not in COMMANDS and b != "notebook"]
    if unknown:
        parser.error(f"unknown block {unknown[0]!r}; choose from {', '.join(COMMANDS)}")
    path = os.path.join(ROOT, "README.md")
    for need in (path, os.path.join(ROOT, "demo.py")):
        if not os.path.isfile(need):
            parser.error(f"{need} not found: run this from a checkout of the repository")
    if not os.access(path, os.W_OK) or not os.access(ROOT, os.W_OK):
        parser.error(f"{path} (or its folder) is not writable")
    names = args.blocks
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for name, cmd in COMMANDS.items():
        if names and name not in names:
            continue
        out = run(cmd)
        text = replace_block(text, name, f"```\n$ {' '.join(cmd)}\n{out}\n```")
    if not names or "notebook" in names:
        make_notebook()
    for name, source_path in SOURCES.items():      # code the README shows, copied from its file
        with open(os.path.join(ROOT, source_path), encoding="utf-8") as f:
            source = f.read().split('"""\n', 1)[-1].strip("\n")       # without the module docstring
        text = replace_block(text, name, f"```python\n{source}\n```")
    if not names:                  # a partial refresh leaves the fingerprint (and the test) alone
        text = replace_block(text, "fingerprint", f"Numbers above were generated from code fingerprint "
                                                  f"`{code_fingerprint()}` by `python -m planarflow refresh-readme`.")
    from ..library.files import atomic_output
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

