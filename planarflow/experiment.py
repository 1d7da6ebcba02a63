"""`python -m planarflow.experiment`: the Figure 3 runner: fits, scores and compares. The code is planarflow/tools/experiment.py."""

from planarflow.tools.experiment import main

if __name__ == "__main__":
    main()
