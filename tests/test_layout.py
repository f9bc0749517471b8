"""The package layout: no import cycles (late imports included), every module importable on its own, and
the import paths plugin authors are told about."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bench

PACKAGE = Path(bench.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _import_graph() -> dict[str, set[str]]:
    """module -> the bench modules it imports anywhere (top level or inside functions).

    ``from bench.x import y`` counts as importing ``bench.x.y`` when that is a module, else ``bench.x``. The
    implicit import of a parent package that Python performs for a submodule is not an edge: a package's
    ``__init__`` importing its members is the registration pattern, and a member must not import it back.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_late_imports_included():
    graph = _import_graph()
    assert len(graph) > 40  # the walk found the package
    assert "bench.cli.options" in graph["bench.cli.run"]  # edges are seen, late ones included
    assert "bench.runner" in graph["bench.cli.run"]
    assert _cycles(graph) == []


def test_subcommands_never_import_the_cli_root():
    graph = _import_graph()
    for name in graph:
        if name.startswith("bench.cli.") and name != "bench.cli.__main__":
            assert "bench.cli" not in graph[name], name


def test_config_knows_no_registry():
    graph = _import_graph()
    assert not {m for m in graph["bench.config"] if m.startswith(("bench.methods", "bench.registry", "bench.datasets"))}


def test_every_module_imports_on_its_own():
    """Each module in a fresh module table (torch stays loaded, so this is fast): an import-order cycle
    would fail here even where the graph test's static view missed it."""
    names = sorted(n for n in _modules() if not n.endswith("__main__"))  # those run the command
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'bench' or m.startswith('bench.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


def test_plugin_import_paths_stay():
    from bench.datasets import DATASETS, ImageSet
    from bench.methods import METHODS, Method, NoParams, Update
    from bench.metrics import METRICS, Batch, Metric, SetMetric

    assert issubclass(METHODS.get("unet"), Method) and NoParams and Update
    assert issubclass(DATASETS.get("samples"), ImageSet)
    assert issubclass(METRICS.get("psnr"), Metric) and issubclass(METRICS.get("fid"), SetMetric) and Batch
