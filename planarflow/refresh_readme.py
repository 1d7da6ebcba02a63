"""`python -m planarflow.refresh_readme`: regenerate every number and picture in README.md. The code is planarflow/tools/refresh_readme.py."""

import sys

from planarflow.tools.progress import run_command
from planarflow.tools.refresh_readme import main

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m planarflow.refresh_readme"))
