"""The house as the listing shows it: the lesson at the bottom, the fast engine over it, the library
a researcher calls over both, the lab over everything — every import pointing down, no loops, no
launcher files, and no function too long to read at once."""

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "planarflow")
FLOORS = ["lesson", "engine", "library", "lab", "command line"]


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def floor(module):
    parts = module.split(".")
    if len(parts) > 2:
        return {"library": 2, "lab": 3}[parts[1]]
    if module in ("planarflow", "planarflow.__main__"):
        return 4
    if module in ("planarflow.library", "planarflow.lab"):
        return {"library": 2, "lab": 3}[parts[1]]
    return 1 if module == "planarflow.fused" else 0


def imports(path):
    """Every planarflow module ``path`` imports, at the top or inside a function."""
    module = module_name(path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("planarflow")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if not prefix.startswith("planarflow"):
                continue
            for a in node.names:                   # `from . import reference` names a module
                candidate = f"{prefix}.{a.name}"
                is_module = os.path.exists(os.path.join(ROOT, *candidate.split(".")) + ".py")
                found.add(candidate if is_module else prefix)
    found.discard(module)
    return found


def graph():
    files = glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)
    return {module_name(f): imports(f) for f in files}


def test_every_import_points_down_the_floors():
    wrong = [f"{m} ({FLOORS[floor(m)]}) imports {i} ({FLOORS[floor(i)]})"
             for m, deps in graph().items() for i in deps if floor(i) > floor(m)]
    assert wrong == []


def test_no_module_imports_itself_back_through_others():
    g = graph()
    loops = []

    def visit(node, path):
        for nxt in g.get(node, ()):
            if nxt == path[0]:
                loops.append(" → ".join(path + [nxt]))
            elif nxt not in path and len(path) < 12:
                visit(nxt, path + [nxt])

    for m in g:
        visit(m, [m])
    assert loops == []


def test_the_lesson_imports_numpy_and_itself_only():
    """The lesson files (and the engine) import the standard library, NumPy, matplotlib (for
    pictures) and each other — so a teacher can copy them alone."""
    lesson = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(PACKAGE, "*.py"))}   # copied beside it
    allowed = {"numpy", "matplotlib", "argparse", "sys", "os", "types", "math", "itertools", "time"} | lesson
    for path in glob.glob(os.path.join(PACKAGE, "*.py")):
        if floor(module_name(path)) > 1:
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] in allowed, (path, name)


def test_no_launcher_files_one_command_line():
    tiny = [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(PACKAGE, "*.py"))
            if "run_command(main" in open(p, encoding="utf-8").read()]
    assert tiny == []
    assert os.path.exists(os.path.join(PACKAGE, "__main__.py"))


def code_lines(lines, node):
    """Lines of a function that are code: not blank, not comments, not docstrings."""
    skip = set()
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip |= set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_no_function_is_longer_than_60_code_lines():
    long = []
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True) + [os.path.join(ROOT, "demo.py")]:
        source = open(path, encoding="utf-8").read()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                n = code_lines(source.splitlines(), node)
                if n > 60:
                    long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}: {n} code lines")
    assert long == []
