"""``python -m planarflow COMMAND [flags]``: planarflow's commands (``python demo.py`` draws Figure 3).

Each command is the ``main(argv)`` of one module of planarflow/lab/, imported only when it is run,
so ``python -m planarflow --help`` (and each command's ``--help``) starts no work.
"""

import importlib
import sys
import textwrap

from .library.progress import run_command, write

COMMANDS = {   # name: (module, what it does)
    "experiment": ("planarflow.lab.experiment",
                   "fit the paper's targets for several seeds and recipes, every fit scored by its exact "
                   "KL; --kl-vs-k: KL against K = 1 … 64 (the paper's Figure 3(d))"),
    "benchmark": ("planarflow.lab.benchmark",
                  "timings of the training step, both engines and the demo; or one measurement alone: "
                  "--posteriors, --placement, --versus-nuts, --stopping, --tails, --energy-only (its -h "
                  "says what each measures)"),
    "exercises": ("planarflow.lab.exercises", "run the exercises for a course and print what this machine observes"),
    "refresh-readme": ("planarflow.lab.refresh_readme",
                       "regenerate every number and picture in README.md and docs/ (maintainers)"),
}

USAGE = "usage: python -m planarflow {" + ",".join(COMMANDS) + "} [flags]   (-h after a command: its flags)"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = [USAGE, "", "planarflow's commands; python demo.py draws the paper's Figure 3.", "", "commands:"]
        lines += [textwrap.fill(text, 100, initial_indent=f"  {name:15} ", subsequent_indent=" " * 18)
                  for name, (_, text) in COMMANDS.items()]
        write(sys.stdout if argv else sys.stderr, "\n".join(lines) + "\n")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        write(sys.stderr, f"{USAGE}\npython -m planarflow: error: unknown command {name!r}; choose from "
                          f"{', '.join(COMMANDS)}\n")
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return run_command(lambda: module.main(rest), f"python -m planarflow {name}")


if __name__ == "__main__":
    sys.exit(main())
