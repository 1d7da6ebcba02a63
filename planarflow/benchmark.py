"""`python -m planarflow.benchmark`: timings of the training step and of the demo. The code is planarflow/tools/benchmark.py."""

from planarflow.tools.benchmark import main

if __name__ == "__main__":
    main()
