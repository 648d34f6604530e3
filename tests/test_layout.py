"""The package's shape: no import cycles, sampling and scoring without the training loop, and a
runner that names no model (everything about a model lives in its family's module)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import ganrun

SRC = Path(ganrun.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures" / "format1"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ganrun modules that importing ``name`` can import, at once or later (imports inside
    functions count: a cycle they close is still a cycle), except under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
            visit(child)

    visit(ast.parse(path.read_text()))
    edges = set()
    for target in found:
        if not target.startswith("ganrun"):
            continue
        while target not in modules:
            target = target.rsplit(".", 1)[0]
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            ancestor = ".".join(parts[:i])
            # A package that is importing this module is already in sys.modules: no edge.
            if i < len(parts) and (name == ancestor or name.startswith(f"{ancestor}.")):
                continue
            edges.add(ancestor)
    edges.discard(name)
    return edges


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, state = [], {}  # state: 1 while on the current path, 2 when finished

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == [], cycles


def test_sampling_and_scoring_never_load_the_training_loop(tmp_path):
    run = Path(shutil.copytree(FIXTURES / "vae", tmp_path / "vae"))
    checkpoint = run / "checkpoints" / "last.pt"
    script = f"""
import sys
from ganrun.cli import main
assert main(["sample", "checkpoint={checkpoint}", "n=4", "device=cpu"]) == 0
assert main(["eval", "checkpoint={checkpoint}", "eval.metrics=[elbo]", "device=cpu",
             "eval.likelihood_examples=10", "eval.cache_dir={tmp_path / "cache"}"]) == 0
loaded = [m for m in sys.modules if m.startswith("ganrun.training") or m == "ganrun.commands.train"]
print("LOADED", loaded)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
    assert (run / "eval.csv").is_file() and list((run / "generated").glob("*.png"))


def test_the_runner_names_no_model():
    """Outside the families' own modules (and the reader of the frozen format-1 checkpoints,
    whose two kinds were gan and vae), no module compares or looks up a model name."""
    from ganrun.models import all_families

    names = {n for f in all_families() for n in (f.name, *f.models)}
    allowed = {SRC / "runs" / "checkpoint.py"}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "families" or path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert offenders == []
