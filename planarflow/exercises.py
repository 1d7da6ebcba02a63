"""`python -m planarflow.exercises`: the README's exercises, run end to end. The code is planarflow/tools/exercises.py."""

import sys

from planarflow.tools.progress import run_command
from planarflow.tools.exercises import main

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m planarflow.exercises"))
