"""The image installs the project with `pip install .` (not editable, unlike `make env`): what the
Dockerfile copies must build a package holding every module and data file the code ships.

A data file missing from `[tool.setuptools.package-data]` works in every test (they run from the
checkout) and fails only in the container; this builds the wheel from exactly the files the
Dockerfile copies and compares it with the tracked files.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_deploy.helpers import DEPLOY, ROOT


def _copied_paths() -> list[str]:
    """Sources of the Dockerfile's COPY instructions (relative to the repository root)."""
    sources: list[str] = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY\s+(.+)\s+\S+$", line)
        if match:
            sources.extend(match[1].split())
    return sources


def _ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns)


def _tracked(paths: list[str]) -> list[str]:
    result = subprocess.run(["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return result.stdout.split()


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    copied = _copied_paths()
    assert {"pyproject.toml", "README.md", "fulfil", "dataflows", "operators", "state",
            "schemas"} <= set(copied)
    assert not [p for p in copied if _ignored(p)], ".dockerignore drops a file the image needs"


@pytest.mark.slow
def test_the_copied_files_build_a_package_with_every_module_and_data_file(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    copied = _copied_paths()
    for source in copied:
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nb[ic]"))
        else:
            shutil.copy2(src, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
         str(context)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "dist").glob("fulfil-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    packages = [p for p in copied if (ROOT / p).is_dir()]
    shipped = [f for f in _tracked(packages) if "/tests/" not in f]
    missing = sorted(f for f in shipped if f not in packaged)
    assert not missing, f"not in the installed package (pyproject package-data?): {missing}"
