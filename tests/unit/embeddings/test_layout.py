"""The package's shape: every module imports on its own, the imports form no cycle, and nothing
reads the environment (settings arrive as arguments)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gateway_pipelines.lib.embeddings as pkg

PACKAGE = pkg.__name__
PACKAGE_DIR = Path(pkg.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py"))
REPO_ROOT = PACKAGE_DIR.parents[2]


def _module_name(stem: str) -> str:
    return PACKAGE if stem == "__init__" else f"{PACKAGE}.{stem}"


def _tree(stem: str) -> ast.Module:
    path = PACKAGE_DIR / f"{stem}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_modules(stem: str) -> set[str]:
    """Absolute names of the modules this one imports, lazy (in-function) imports included."""
    here = _module_name(stem)
    # the package a relative import is relative to
    anchor = here if stem == "__init__" else here.rsplit(".", 1)[0]
    submodules = {_module_name(s) for s in MODULES}
    found: set[str] = set()
    for node in ast.walk(_tree(stem)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = anchor.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(part for part in (base, node.module) if part)
            for alias in node.names:
                # `from pkg import mod` needs the submodule; `from pkg import name` needs pkg/__init__
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in submodules else target)
    return found


def _intra_package_graph() -> dict[str, set[str]]:
    names = {_module_name(s): s for s in MODULES}
    return {stem: {names[m] for m in _imported_modules(stem) if m in names and names[m] != stem}
            for stem in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_list_is_the_intended_layout():
    assert MODULES == ["__init__", "base", "coverage", "factory", "genre_features", "hashing", "hybrid", "local_provider",
                       "metadata_features", "mood_features", "mood_vocabulary", "openai_provider", "plan",
                       "resource", "wordllama_provider"]


# One interpreter for all the modules: before each import it forgets every module of ours, so each is
# imported first, as in a fresh interpreter, while numpy, scikit-learn and dagster load once (a fresh
# interpreter per module cost 2.5 s of CPU each).
_IMPORT_EACH_FIRST = """
import json, sys, traceback
errors = {}
for stem, name in json.loads(sys.argv[1]).items():
    for loaded in [m for m in sys.modules if m == "gateway_pipelines" or m.startswith("gateway_pipelines.")]:
        del sys.modules[loaded]
    try:
        __import__(name)
    except BaseException:
        errors[stem] = traceback.format_exc()
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def import_errors() -> dict[str, str]:
    import json

    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, json.dumps({s: _module_name(s) for s in MODULES})],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stem", MODULES)
def test_each_module_imports_first_in_a_clean_interpreter(stem, import_errors):
    assert stem not in import_errors, import_errors.get(stem)


def test_the_import_graph_has_no_cycle():
    graph = _intra_package_graph()
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])
    # only the package's front door imports the package itself
    assert all("__init__" not in deps for stem, deps in graph.items() if stem != "__init__")


def test_the_providers_share_a_base_and_only_the_factory_knows_both():
    graph = _intra_package_graph()
    assert graph["base"] == set()
    # the local model measures its own vocabulary coverage; coverage knows no provider
    assert graph["openai_provider"] == {"base"} and graph["local_provider"] == {"base", "coverage"}
    assert graph["coverage"] == set()
    assert graph["factory"] == {"base", "openai_provider", "local_provider", "wordllama_provider"}
    assert graph["wordllama_provider"] == {"base"}
    assert {s for s, deps in graph.items() if {"openai_provider", "local_provider"} <= deps} == {"factory",
                                                                                                 "__init__"}


def test_the_feature_blocks_do_not_depend_on_providers_or_composition():
    graph = _intra_package_graph()
    blocks = {"genre_features", "mood_vocabulary", "mood_features", "metadata_features"}
    for stem in blocks:
        assert graph[stem] <= blocks, (stem, graph[stem])


def test_cycle_finder_sees_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("stem", MODULES)
def test_no_module_reads_the_environment_or_the_state_folder(stem):
    tree = _tree(stem)
    reads = [f"line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
             if (isinstance(n, ast.Attribute) and n.attr in {"environ", "getenv", "environb"})
             or (isinstance(n, ast.Name) and n.id in {"environ", "getenv"})
             or (isinstance(n, ast.ImportFrom) and n.module == "os"
                 and {a.name for a in n.names} & {"environ", "getenv", "environb"})]
    assert not reads, reads
    forbidden = {"gateway_pipelines.lib.state", "gateway_pipelines.runtime", "gateway_pipelines.settings"}
    imported = {m for m in _imported_modules(stem) if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not imported, imported
