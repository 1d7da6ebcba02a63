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
