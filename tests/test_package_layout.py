"""The package's layout: its rooms stand in tiers, imports run downwards only (module level or inside a function), also
transitively (importing a model loads no training objective, metric or conversion layout), and there is no import
cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from .helpers import ROOT

PACKAGE = ROOT / "fvq_hf"
# Bottom to top; a module may import its own tier (without a cycle) and those below, never one above. `space/` and
# `benchmarks/` stand above the package.
TIERS = [
    ("search", "data", "layers", "losses", "config_keys", "registry"),
    ("quantizers", "bridges"),
    ("conversion", "hub"),  # the hub: the model-facing support (mixin, card, reports, paths, remote code)
    ("tokenizer", "prior", "diffusion"),  # the models (diffusion: the latent generators' denoisers and objectives)
    ("pipelines", "evaluation", "publishing", "codebook_building"),
    ("training",),
    ("cli",),
]
TIER = {room: level for level, rooms in enumerate(TIERS) for room in rooms}
# What a model must not load, even through what it imports.
NOT_FOR_MODELS = ("fvq_hf.losses", "fvq_hf.conversion.layouts", "fvq_hf.evaluation.metrics")
MODELS = ("fvq_hf.tokenizer", "fvq_hf.prior", "fvq_hf.diffusion.dit")


def root_names() -> dict[str, str]:
    """The lazy package root's public names -> the module that defines each (its `_MODULES` table, read as text)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    table = next(node.value for node in tree.body if isinstance(node, ast.AnnAssign | ast.Assign)
                 and "_MODULES" in ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target))
    return {name: module for module, names in ast.literal_eval(table).items() for name in names}


ROOT_NAMES = root_names()


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    """Every module of the package -> the package modules it imports: anywhere in it (functions included), or at
    module level only (what importing it runs), where importing a module also imports the packages above it."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else ast.walk(tree)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # `from pkg import module` imports the module; `from module import name` the module itself; a name of
                # the lazy package root (`from fvq_hf import FVQPipeline`) imports the module that defines it
                if base == "fvq_hf":
                    targets.update(ROOT_NAMES[a.name] for a in node.names if a.name in ROOT_NAMES)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
                targets.update(c for c in candidates if c in modules and (c != base or not any(
                    f"{base}.{a.name}" in modules for a in node.names)))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
        if module_level_only:  # importing a.b.c runs a and a.b first
            parts = name.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts)))
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


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def tier(module: str) -> int | None:
    """A module's tier; None for the package root (it imports nothing when imported: its names load lazily)."""
    parts = module.split(".")
    return TIER[parts[1]] if len(parts) > 1 else None


GRAPH = import_graph()
MODULE_LEVEL = import_graph(module_level_only=True)


def test_the_graph_sees_the_imports_it_should():
    # (so that the checks below can fail: the graph finds relative, absolute and function-level imports, and tells
    # module-level ones apart)
    assert "fvq_hf.quantizers.base" in GRAPH["fvq_hf.quantizers.vq"]
    assert "fvq_hf.conversion.loader" in GRAPH["fvq_hf.tokenizer.fvq_model"]  # inside from_original_checkpoint
    assert "fvq_hf.conversion.loader" not in MODULE_LEVEL["fvq_hf.tokenizer.fvq_model"]
    assert "fvq_hf.losses.lpips" in reach(MODULE_LEVEL, "fvq_hf.evaluation.evaluate")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # `from fvq_hf import FVQPipeline` in a lower module would go up through the lazy root: the graph maps the name
    import fvq_hf

    assert ROOT_NAMES["FVQPipeline"] == "fvq_hf.pipelines" and set(ROOT_NAMES) == set(fvq_hf.__all__)


def test_every_room_has_a_tier():
    rooms = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert rooms == set(TIER)


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


@pytest.mark.parametrize("room", list(TIER))
def test_no_import_runs_upward(room):
    for module, targets in GRAPH.items():
        if module == f"fvq_hf.{room}" or module.startswith(f"fvq_hf.{room}."):
            wrong = sorted(t for t in targets if tier(t) is not None and tier(t) > TIER[room])
            assert not wrong, f"{module} (tier {TIER[room]}) imports {wrong}"


@pytest.mark.parametrize("model", MODELS)
def test_a_model_reaches_no_loss_layout_or_metric_through_its_imports(model):
    wrong = sorted(m for m in reach(MODULE_LEVEL, model) if m.startswith(NOT_FOR_MODELS))
    assert not wrong, f"importing {model} imports {wrong}"


def test_importing_a_model_loads_no_loss_layout_or_metric():
    """The same, as Python runs it: fresh interpreters, their loaded modules read off sys.modules."""
    script = ("import json, sys; import {0}; "
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('fvq_hf'))))")
    for model in ("fvq_hf", *MODELS):
        run = subprocess.run([sys.executable, "-c", script.format(model)], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        loaded = json.loads(run.stdout.splitlines()[-1])
        if model == "fvq_hf":
            assert loaded == ["fvq_hf"]  # the root's names load when first used
        else:
            assert model in loaded and not [m for m in loaded if m.startswith(NOT_FOR_MODELS)], loaded


def test_the_root_gives_every_public_name_and_lists_it():
    import fvq_hf

    assert set(fvq_hf.__all__) <= set(dir(fvq_hf))
    assert all(getattr(fvq_hf, name).__name__ == name for name in fvq_hf.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        fvq_hf.NoSuchName  # noqa: B018


def test_argument_parsing_lives_in_cli():
    parsers = [m for m, p in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
               if "ArgumentParser(" in p.read_text() and not m.startswith("fvq_hf.cli")]
    assert not parsers
