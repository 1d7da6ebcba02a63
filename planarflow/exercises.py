"""`python -m planarflow.exercises`: the README's exercises, run end to end. The code is planarflow/tools/exercises.py."""

from planarflow.tools.exercises import main

if __name__ == "__main__":
    main()
