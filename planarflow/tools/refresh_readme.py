"""Regenerate every number and picture in README.md from the commands that print them.

    python -m planarflow.refresh_readme            # run from the repository's top folder

Each generated block of README.md sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
and is replaced by the output of the command recorded with it. The README also records a
fingerprint of the code (planarflow/*.py, planarflow/tools/*.py, docs/*.py and demo.py); tests/test_readme.py fails when the code
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
    "benchmark": ["python", "-m", "planarflow.benchmark"],
    "kl-vs-k": ["python", "-m", "planarflow.experiment", "--kl-vs-k", "--recipe", "planarflow", "reference",
                "--seeds", "0", "1", "2", "--out", "docs/kl_vs_k.png"],
    "exercises": ["python", "-m", "planarflow.exercises"],
    "placement": ["python", "-m", "planarflow.benchmark", "--placement"],
    "posteriors": ["python", "-m", "planarflow.benchmark", "--posteriors"],
    "eight-schools": ["python", "docs/eight_schools.py"],
}


# name -> a file whose code (after its docstring) the README shows in the block
SOURCES = {"eight-schools-code": "docs/eight_schools.py"}


def code_fingerprint(root=ROOT):
    """sha256 over the package's modules and demo.py (names and contents), first 16 hex digits."""
    h = hashlib.sha256()
    files = sorted(glob.glob(os.path.join(root, "planarflow", "*.py")) + glob.glob(os.path.join(root, "planarflow", "tools", "*.py"))
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


def main(names=None):
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for name, cmd in COMMANDS.items():
        if names and name not in names:
            continue
        out = run(cmd)
        text = replace_block(text, name, f"```\n$ {' '.join(cmd)}\n{out}\n```")
    for name, path in SOURCES.items():            # code the README shows, copied from its file
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            source = f.read().split('"""\n', 1)[-1].strip("\n")       # without the module docstring
        text = replace_block(text, name, f"```python\n{source}\n```")
    if names:                      # a partial refresh leaves the fingerprint (and the test) alone
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    text = replace_block(text, "fingerprint", f"Numbers above were generated from code fingerprint "
                                              f"`{code_fingerprint()}` by `python -m planarflow.refresh_readme`.")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
