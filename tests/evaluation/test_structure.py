"""The evaluation package reads one way: no import cycle between its modules, and no module doing several jobs."""

from __future__ import annotations

import ast
from pathlib import Path

import dermascan.evaluation

PACKAGE = Path(dermascan.evaluation.__file__).parent


def _imports() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dermascan.evaluation"):
                if node.module == "dermascan.evaluation":
                    deps |= {alias.name for alias in node.names}
                else:
                    deps.add(node.module.rsplit(".", 1)[-1])
        graph[path.stem] = deps - {path.stem}
    return graph


def test_no_import_cycle_in_the_evaluation_package() -> None:
    graph = _imports()
    assert {"metrics", "intervals", "report", "operating_point"} <= set(graph)
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        assert module not in stack, f"import cycle: {' -> '.join([*stack[stack.index(module) :], module])}"
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, [*stack, module])
        done.add(module)

    for module in graph:
        visit(module, [])
    # The leaves stay leaves: pure metrics import only the input checks, and nothing imports the entry point.
    assert graph["metrics"] == {"_validate"}
    assert not any("evaluate" in deps for deps in graph.values())


def test_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 420, sizes
