"""The package's layout: no import cycle between its modules, and imports that run one way (model code imports no
training, command-line, pipeline or publishing code; the conversion never imports the tokenizer)."""

from __future__ import annotations

import ast

import pytest

from .helpers import ROOT

PACKAGE = ROOT / "fvq_hf"
MODEL_ROOMS = ("tokenizer", "quantizers", "bridges", "search", "prior", "layers")
# Rooms model code must not import (they build on models).
ABOVE_MODELS = ("training", "cli", "pipelines", "evaluation.evaluate", "hub.publish")


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package modules it imports (anywhere in it, functions included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # `from pkg import module` imports the module; `from module import name` the module itself
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
                targets.update(c for c in candidates if c in modules and (c != base or not any(
                    f"{base}.{a.name}" in modules for a in node.names)))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = import_graph()


def test_the_graph_sees_the_imports_it_should():
    # (so that the checks below can fail: the graph finds relative, absolute and function-level imports)
    assert "fvq_hf.quantizers.base" in GRAPH["fvq_hf.quantizers.vq"]
    assert "fvq_hf.conversion.loader" in GRAPH["fvq_hf.tokenizer.fvq_model"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


@pytest.mark.parametrize("room", MODEL_ROOMS)
def test_model_code_imports_nothing_built_on_it(room):
    for module, targets in GRAPH.items():
        if module.startswith(f"fvq_hf.{room}"):
            wrong = sorted(t for t in targets if t.startswith(tuple(f"fvq_hf.{above}" for above in ABOVE_MODELS)))
            assert not wrong, f"{module} imports {wrong}"


def test_the_conversion_never_imports_the_tokenizer():
    wrong = {m: t for m, t in GRAPH.items() if m.startswith("fvq_hf.conversion")
             and any(x.startswith("fvq_hf.tokenizer") for x in t)}
    assert not wrong


def test_argument_parsing_lives_in_cli():
    parsers = [m for m, p in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
               if "ArgumentParser(" in p.read_text() and not m.startswith("fvq_hf.cli")]
    assert not parsers
