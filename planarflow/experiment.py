"""`python -m planarflow.experiment`: the Figure 3 runner: fits, scores and compares. The code is planarflow/tools/experiment.py."""

import sys

from planarflow.tools.progress import run_command
from planarflow.tools.experiment import main

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m planarflow.experiment"))
