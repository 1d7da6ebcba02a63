"""`python -m planarflow.refresh_readme`: regenerate every number and picture in README.md. The code is planarflow/tools/refresh_readme.py."""

from planarflow.tools.refresh_readme import main

if __name__ == "__main__":
    main()
