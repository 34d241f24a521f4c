"""The layers of DESIGN.md, checked on the source: imports point one way (protocol <-
federation <- node), protocol/ and federation/ open no file, socket, thread or
process, and the command line knows no storage library (the store translates their
errors into ``StoreError``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = ("protocol", "federation")

FORBIDDEN_MODULES = {
    "socket", "ssl", "asyncio", "selectors", "subprocess", "multiprocessing",
    "concurrent", "sqlite3", "aiohttp", "urllib.request", "http.client", "http.server",
    "shutil", "tempfile", "signal", "mmap", "fcntl", "eventsourcing", "psycopg",
}
"""Modules whose mere import in protocol/ or federation/ means I/O, a thread or a
process (``threading`` is checked by name below: a ``threading.local`` is no thread)."""
FORBIDDEN_CALLS = {
    "open", "os.open", "os.fdopen", "io.open", "os.fork", "os.forkpty", "os.system",
    "os.popen", "os.spawnv", "os.execv", "os.remove", "os.unlink", "os.rename",
    "os.replace", "os.mkdir", "os.makedirs", "os.listdir", "os.scandir", "os.stat",
    "threading.Thread", "threading.Timer", "_thread.start_new_thread", "time.sleep",
}
FORBIDDEN_METHODS = {
    "read_text", "read_bytes", "write_text", "write_bytes", "open", "mkdir", "unlink",
    "touch", "rmdir", "iterdir", "glob", "rglob",
}
"""``pathlib.Path`` methods that touch the file system (a stream passed in by the
caller, as the audit reads its bundle, is not opened here)."""


def sources(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def name_of(node: ast.expr) -> str:
    """``a.b.c`` for a dotted name; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        left = name_of(node.value)
        return f"{left}.{node.attr}" if left else ""
    return ""


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in ``tree``, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def io_found(path: Path, root: Path = ROOT) -> list[str]:
    """What in ``path`` opens a file or socket or starts a thread or process."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(root)
    found = [f"{where}:{line}: imports {module}" for line, module in imported(tree)
             if any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES)]
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = name_of(node.func)
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in FORBIDDEN_CALLS or method in FORBIDDEN_METHODS:
                found.append(f"{where}:{node.lineno}: calls {name or method}")
        elif (isinstance(node, ast.Attribute) and id(node) not in called
              and name_of(node) in FORBIDDEN_CALLS):  # passed on, to be called elsewhere
            found.append(f"{where}:{node.lineno}: uses {name_of(node)}")
    return found


@pytest.mark.parametrize("package", PURE)
def test_pure_layers_open_no_file_socket_thread_or_process(package: str) -> None:
    found = [f for path in sources(package) for f in io_found(path)]
    assert found == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The scan is not blind: each kind of I/O in a module is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import socket\nimport threading\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "def f(p):\n    open(p)\n    p.read_bytes()\n    threading.Thread(target=f)\n"
        "    os.fork()\n    g(os.fork)\n    import urllib.parse, urllib.request\n"
        "    return threading.local()\n", encoding="utf-8")
    found = io_found(sample, tmp_path)
    assert sorted(f.split(": ", 1)[1] for f in found) == sorted([
        "imports socket", "imports concurrent.futures", "imports urllib.request",
        "calls open", "calls p.read_bytes", "calls threading.Thread", "calls os.fork",
        "uses os.fork"])


LOWER = {"protocol": ("federation", "node"), "federation": ("node",)}


@pytest.mark.parametrize("package", list(LOWER))
def test_imports_point_one_way(package: str) -> None:
    """protocol imports nothing of federation or node; federation nothing of node."""
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
             for path in sources(package)
             for line, module in imported(ast.parse(path.read_text(encoding="utf-8")))
             if module.split(".")[0] in LOWER[package]]
    assert wrong == []


def test_the_command_line_imports_no_storage_library() -> None:
    """The store translates eventsourcing's and sqlite3's errors (``StoreError``), so
    the command line needs neither."""
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
             for path in sources("node/cli")
             for line, module in imported(ast.parse(path.read_text(encoding="utf-8")))
             if module.split(".")[0] in ("eventsourcing", "sqlite3", "psycopg")]
    assert wrong == []


ROOTS = {"protocol": "protocol.errors.ProtocolError",
         "federation": "federation.errors.FederationError",
         "node": "node.errors.NodeError"}
OUTSIDE_THE_ROOTS = {"node.cli.common.Failure"}
"""The command line's own error is click's (one line and an exit code): the layers'
errors become it."""


@pytest.mark.parametrize("package", list(ROOTS))
def test_one_error_root_per_layer(package: str) -> None:
    """Every public exception a layer defines derives from the layer's one root."""
    import importlib
    import inspect

    module_name, _, root_name = ROOTS[package].rpartition(".")
    root = getattr(importlib.import_module(module_name), root_name)
    stray = []
    for path in sources(package):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name.removesuffix(".__init__"))
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__ and not attr.startswith("_")
                    and not issubclass(value, root)
                    and f"{module.__name__}.{attr}" not in OUTSIDE_THE_ROOTS):
                stray.append(f"{module.__name__}.{attr}")
    assert stray == []
