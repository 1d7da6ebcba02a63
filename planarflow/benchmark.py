"""`python -m planarflow.benchmark`: timings of the training step and of the demo. The code is planarflow/tools/benchmark.py."""

import sys

from planarflow.tools.progress import run_command
from planarflow.tools.benchmark import main

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m planarflow.benchmark"))
