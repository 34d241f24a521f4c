"""The repository stands alone, and a person finds ``disco`` (issue 13, points 12 and 15).

A clone from a public host has nothing beside it: no file of the project may read,
link or point to a folder outside the repository; the test vectors ship under
``tests/``; the README's design link leads to a file in the repository. And after
``make install`` the command is ``.venv/bin/disco``, as the README says, and the
README's ways of putting it on the PATH work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import test_merkle
from tests.conftest import REPO

# Built from parts, so that this file does not name them itself.
OUTSIDE = ("..", "/" + "shared"), ("/work", "/" + "shared")
NEEDLES = tuple(a + b for a, b in OUTSIDE)
SKIP_DIRS = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache",
             ".mypy_cache", ".ruff_cache", "build", "node_modules"}


def repository_files(root: Path) -> list[Path]:
    """Every file a clone of ``root`` may hold (tooling and caches left out)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found += [Path(dirpath) / name for name in filenames]
    return found


def outside_references(root: Path) -> list[str]:
    """``path:line: text`` for each line of a text file that points outside ``root``."""
    hits = []
    for path in repository_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary: a database, an image
        for number, line in enumerate(text.splitlines(), 1):
            if any(needle in line for needle in NEEDLES):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_file_points_outside_the_repository() -> None:
    assert outside_references(REPO) == []


def test_the_scan_finds_a_reference_where_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(f'VECTORS = "{NEEDLES[0]}/vectors"\n')
    (tmp_path / "Makefile").write_text(f"test:\n\tcp -r {NEEDLES[1]}/vectors tests/\n")
    (tmp_path / "README.md").write_text("Nothing outside here.\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x.py").write_text(NEEDLES[0])  # not the project's
    (tmp_path / "ledger.sqlite").write_bytes(b"\xff\xfe" + NEEDLES[0].encode())

    hits = outside_references(tmp_path)

    assert sorted(h.split(":")[0] for h in hits) == ["Makefile", "tests/test_x.py"]


def test_the_vectors_ship_under_tests_with_their_licence() -> None:
    vectors = REPO / "tests" / "vectors"
    assert test_merkle.VECTOR_DIR == vectors / "rfc9162"
    assert len(list((vectors / "rfc9162" / "inclusion").rglob("*.json"))) >= 50
    assert len(list((vectors / "rfc9162" / "consistency").rglob("*.json"))) >= 50
    assert "Apache License" in (vectors / "rfc9162" / "LICENSE").read_text()
    note = (vectors / "README.md").read_text()
    assert "transparency-dev/merkle" in note and "Apache License 2.0" in note
    # Nothing else: every file is a vector the tests read, or the note and licence.
    others = {p.relative_to(vectors).as_posix() for p in vectors.rglob("*")
              if p.is_file() and p.suffix != ".json"}
    assert others == {"README.md", "rfc9162/LICENSE"}


def test_the_readme_links_lead_to_files_in_the_repository() -> None:
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert "docs/design.md" in local
    assert [t for t in local if not (REPO / t).is_file()] == []


def test_the_design_document_covers_the_contract() -> None:
    design = (REPO / "docs" / "design.md").read_text()
    for heading in ("## The signed entry", "## Layers", "## Storage",
                    "## Federation, genesis, roster", "## Ledger rules", "## Forks",
                    "## The federation over time", "## Sync between nodes",
                    "## Checkpoints and offline audit", "## The command line"):
        assert heading in design
    assert "`out-of-range`" in design and "2^62" in design
    assert "federation/governance.py" in design and "`vote-late`" in design
    assert "(sync.md)" in design and "(bundle.md)" in design


# -- Point 12: where `disco` is --------------------------------------------------

VENV_BIN = REPO / ".venv" / "bin"


def path_without_venv() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != VENV_BIN.resolve())


def test_the_readme_says_where_disco_is_and_how_to_put_it_on_the_path() -> None:
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^VENV := \.venv$", makefile, re.MULTILINE)
    assert 'disco = "node.cli:run"' in (REPO / "pyproject.toml").read_text()
    assert "`.venv/bin/disco`" in readme
    assert "source .venv/bin/activate" in readme
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in readme


@pytest.mark.skipif(not (VENV_BIN / "disco").exists(),
                    reason="no .venv here: the project was not installed by make")
@pytest.mark.parametrize("shell", [
    ".venv/bin/disco --help",
    "source .venv/bin/activate && disco --help",
    'export PATH="$PWD/.venv/bin:$PATH" && disco --help',
])
def test_disco_runs_the_ways_the_readme_says(shell: str) -> None:
    bash = shutil.which("bash")
    assert bash
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = path_without_venv()
    result = subprocess.run([bash, "-c", shell], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: disco ")
    assert "init" in result.stdout and "audit" in result.stdout

