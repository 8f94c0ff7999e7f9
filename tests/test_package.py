"""The package's structure, read from its source: no import circle among skunet's
modules (nor among its sub-packages), no module reaching into another module's private
names, no module much over 400 lines, and importing skunet and its command line leaves
torchvision unloaded."""

import ast
from pathlib import Path

import pytest

import skunet

ROOT = Path(skunet.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (ROOT.parent / name.replace(".", "/") / "__init__.py").exists()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """skunet modules that ``name`` imports anywhere (functions and TYPE_CHECKING too)."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "skunet"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.split(".")[0] == "skunet":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


def _unit(name: str) -> str:
    """A module, or the sub-package (``skunet.callbacks``, ``skunet.metrics``, ...) that
    holds it, counted as one module."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or _is_package(name) else name


@pytest.mark.parametrize("by_subpackage", [False, True])
def test_no_import_circle(by_subpackage):
    graph: dict[str, set[str]] = {}
    for name, tree in MODULES.items():
        if not by_subpackage:
            graph[name] = _imports(name, tree)
            continue
        unit = _unit(name)
        edges = {_unit(m) for m in _imports(name, tree)} - {unit}
        graph[unit] = graph.get(unit, set()) | edges
    for targets in graph.values():
        targets &= set(graph)  # the package __init__ ("skunet") imports everything
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _own_private_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_uses_another_modules_private_names():
    problems = []
    for name, tree in MODULES.items():
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                problems += [
                    f"{name}:{node.lineno} imports {a.name} from {node.module}"
                    for a in node.names
                    if _private(a.name) or any(_private(p) for p in (node.module or "").split("."))
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                mine = (isinstance(owner, ast.Name) and owner.id in ("self", "cls")) or (
                    isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super"
                )
                if not mine and node.attr not in own:
                    problems.append(f"{name}:{node.lineno} uses {ast.unparse(node)}")
    assert not problems, "\n".join(problems)


def test_modules_stay_under_about_400_lines():
    lengths = {path: len(path.read_text().splitlines()) for path in ROOT.rglob("*.py")}
    assert not {str(p.relative_to(ROOT)): n for p, n in lengths.items() if n > 420}


def test_importing_skunet_and_its_command_line_leaves_torchvision_unloaded():
    """torchvision costs seconds at import (its detection models load torch's compiler):
    skunet imports it only to build a VGG network or augment with an affine jitter, so
    ``skunet --help`` and every worker process start without it."""
    import subprocess
    import sys

    code = "import sys, skunet, skunet.cli, skunet.presets\nprint('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_module_has_a_test_home():
    """What the development page says: a test file of its own, its sub-package's, or a
    row of the page's table of internals tested through the surface they serve."""
    tests = ROOT.parent / "tests"
    page = (ROOT.parent / "docs" / "development.md").read_text()
    listed = {name for row in page.splitlines() if row.strip().startswith("| `")
              for name in row.split("|")[1].replace("`", "").replace(",", " ").split()}  # fmt: skip
    homeless = []
    for name in MODULES:
        parts = name.split(".")
        if len(parts) == 1 or parts[-1].startswith("__"):
            continue
        body = MODULES[name].body
        if _is_package(name) and len(body) == 1 and isinstance(body[0], ast.Expr):
            continue  # a stage's folder: its docstring alone
        own = tests / f"test_{parts[-1]}.py"
        package = tests / f"test_{parts[1]}.py"
        if not (own.exists() or (len(parts) > 2 and package.exists()) or parts[-1] in listed):
            homeless.append(name)
    for row in listed:  # the table names tests that exist
        assert any(f"skunet.{row}" == m or m.endswith(f".{row}") for m in MODULES), row
    assert not homeless, f"no test file and not in docs/development.md's table: {homeless}"


def test_the_package_fits_a_30_mb_wheel():
    """The wheel ships the newest version of each pretrained model and stays under
    30 MB: the package's files add up to less (float16 weights hardly compress); older
    versions are found in the cache (skunet.model_files)."""
    files = [p for p in ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 30e6
    shipped = sorted(p.name for p in (ROOT / "data" / "models").glob("*.skunet"))
    names = [name.rsplit("-", 1)[0] for name in shipped]
    assert len(names) == len(set(names)), f"one version of each model ships: {shipped}"
