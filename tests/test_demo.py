"""The demo runs headless and writes its figure."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "demo.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_demo_quick_runs_and_writes_a_png(tmp_path):
    out = tmp_path / "fig.png"
    res = run_demo("--quick", "--out", str(out), "--save-dir", str(tmp_path / "flows"))
    assert res.returncode == 0, res.stderr
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert str(out) in res.stdout
    assert len(os.listdir(tmp_path / "flows")) == 12
    for name in ["U1", "U2", "U3", "U4"]:
        assert name in res.stdout
    # every run also writes the training curves and the layer-by-layer pictures beside it
    for suffix, magic in [("_training.png", b"\x89PNG"), ("_layers.png", b"\x89PNG"), ("_layers.gif", b"GIF8")]:
        path = tmp_path / ("fig" + suffix)
        with open(path, "rb") as f:
            assert f.read(4) == magic, suffix
        assert os.path.getsize(path) < 5_000_000
        assert str(path) in res.stdout


import pytest


@pytest.mark.parametrize("args, word", [
    (["--K", "0"], "--K"), (["--K", "two"], "--K"), (["--targets", "U9"], "--targets"),
    (["--steps", "-1"], "--steps"), (["--steps", "1.5"], "--steps"), (["--batch-size", "0"], "--batch-size"),
    (["--lr", "0"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--seed", "x"], "--seed"),
    (["--out", "/no/such/folder/fig.png"], "--out"), (["--out", "/tmp"], "--out"),
    (["--save-dir", __file__], "--save-dir"), (["--workers", "0"], "--workers"), (["--bogus"], "unrecognized"),
])
def test_demo_rejects_bad_flags_with_one_line_and_status_2(args, word):
    res = run_demo(*args, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], res.stderr
    assert res.stdout == ""                                     # nothing started
