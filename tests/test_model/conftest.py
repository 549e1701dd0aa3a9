"""Fixtures for the delivery-model tests: mapping files and samples of the real data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

MAPPINGS = Path(__file__).resolve().parents[2] / "fulfil" / "data" / "delivery"


@pytest.fixture
def sample_factory(shared_dir: Path, tmp_path: Path):
    """``sample(relative_path, rows)``: the first ``rows`` data rows of a shared file, written
    to a temporary file at test time (never into the repository)."""

    def sample(rel: str, rows: int) -> Path:
        src = shared_dir / "data" / rel
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        out = tmp_path / src.name
        out.write_text("".join(lines[: rows + 1]), encoding="utf-8")
        return out

    return sample
