"""The code map holds (README, "Code map"): the commands at the top level and the rest in
subpackages, no private names read across modules, no module over 400 lines, no import
cycle, experiments/ holding recipes only. Read from the source with ``ast``; nothing is
imported, so these checks cost well under a second."""

import ast
import collections
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "mobilenet_tf")
COMMANDS = {"train", "evaluate", "export", "predict", "profile", "weights"}


def _modules(*roots):
    """{dotted module name: parsed tree} of every .py file under ``roots``."""
    found = {}
    for root in roots:
        for dirpath, _, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    dotted = dotted.removesuffix(".__init__")
                    with open(path, encoding="utf-8") as f:
                        found[dotted] = (path, ast.parse(f.read(), path))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_top_level_holds_the_commands_and_few_helpers_and_the_rest_is_in_subpackages():
    top = {n[:-3] for n in os.listdir(PACKAGE) if n.endswith(".py")} - {"__init__"}
    packages = {n for n in os.listdir(PACKAGE)
                if os.path.isfile(os.path.join(PACKAGE, n, "__init__.py"))}
    assert COMMANDS <= top
    assert len(top) <= 12, sorted(top)
    assert len(packages) >= 5, sorted(packages)
    assert not packages & COMMANDS  # `training/`, not `train/`: python -m stays unambiguous


def test_no_module_reads_another_modules_private_names():
    modules = _modules("mobilenet_tf", "tests")
    offences = []
    for name, (path, tree) in modules.items():
        aliases = {}  # local name -> our module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilenet_tf"):
                for a in node.names:
                    if _private(a.name):
                        offences.append(f"{path}: imports {node.module}.{a.name}")
                    if f"{node.module}.{a.name}" in modules:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("mobilenet_tf"):
                        aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                offences.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_no_file_over_400_lines():
    long = []
    for _, (path, _) in _modules("mobilenet_tf", "tests").items():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > 400:
            long.append(f"{path}: {n} lines")
    assert not long, "\n".join(long)


def test_no_import_cycle_between_modules():
    modules = _modules("mobilenet_tf")
    graph = collections.defaultdict(set)
    for name, (_, tree) in modules.items():
        for node in tree.body:  # module-level imports: the ones that run on import
            targets = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilenet_tf"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [])
    assert not cycles, "\n".join(cycles)


def test_experiments_holds_flagfiles_only():
    names = os.listdir(os.path.join(REPO, "experiments"))
    assert names and all(n.endswith(".cfg") for n in names), sorted(names)
