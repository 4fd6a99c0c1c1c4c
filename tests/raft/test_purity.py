"""The core is pure (CONVENTIONS §1, §3): importing it pulls in neither Ray nor asyncio, and
its modules import no clock, randomness, OS, socket or thread module at run time. The only
randomness is the ``random.Random`` the caller injects (imported for its annotation only,
under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import raftfleet_ray.raft

CORE = Path(raftfleet_ray.raft.__file__).parent
FORBIDDEN = {"ray", "asyncio", "time", "random", "os", "socket", "threading"}


def test_import_in_a_fresh_interpreter_pulls_in_no_ray_or_asyncio() -> None:
    """CONVENTIONS §1: importing the core in a fresh interpreter imports neither ray nor asyncio."""
    code = (
        "import sys\n"
        "import raftfleet_ray.raft\n"
        "bad = sorted(m for m in ('ray', 'asyncio') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core imported: {out.stdout.strip()}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Top-level module names imported anywhere, except inside ``if TYPE_CHECKING:``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append((node.lineno, "__import__"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_core_modules_import_nothing_impure_at_run_time() -> None:
    """CONVENTIONS §1/§3: no runtime import of ray, asyncio, time, random, os, socket or
    threading in raftfleet_ray/raft/*.py."""
    files = sorted(CORE.glob("*.py"))
    assert {f.name for f in files} >= {"node.py", "types.py", "config.py", "bugs.py", "__init__.py"}
    bad = []
    for f in files:
        for line, mod in runtime_imports(ast.parse(f.read_text(), filename=str(f))):
            if mod in FORBIDDEN or mod in ("importlib", "__import__"):
                bad.append(f"{f.name}:{line}: {mod}")
    assert bad == []


def test_checker_sees_imports_and_skips_type_checking_blocks() -> None:
    """The static check itself: it sees nested and dotted imports and skips TYPE_CHECKING blocks."""
    src = (
        "from typing import TYPE_CHECKING\n"
        "import os.path\n"
        "if TYPE_CHECKING:\n"
        "    import random\n"
        "def f():\n"
        "    from time import monotonic\n"
    )
    assert [m for _, m in runtime_imports(ast.parse(src))] == ["typing", "os", "time"]


def test_core_opens_no_files() -> None:
    """No file I/O in the core: storage is the caller's (a Ready says what to write)."""
    for f in sorted(CORE.glob("*.py")):
        tree = ast.parse(f.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "open"]
        assert calls == [], f.name
