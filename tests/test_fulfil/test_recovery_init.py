"""`fulfil recovery-init`: one partition per process (`--only`), safe to repeat (`--if-missing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulfil.cli import main


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(["recovery-init", *argv])
    return int(done.value.code)


def test_without_only_every_partition_is_created(tmp_path: Path) -> None:
    assert _run(str(tmp_path), "3") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]


def test_only_creates_the_one_partition_of_that_process(tmp_path: Path) -> None:
    assert _run(str(tmp_path), "4", "--only", "2") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["part-2.sqlite3"]  # no temp dir left


def test_a_process_beyond_the_partition_count_holds_none(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert _run(str(tmp_path), "2", "--only", "3") == 0
    assert list(tmp_path.iterdir()) == []
    assert "holds none" in capsys.readouterr().out


def test_if_missing_leaves_existing_partitions_untouched(tmp_path: Path) -> None:
    assert _run(str(tmp_path), "2", "--only", "1", "--if-missing") == 0
    part = tmp_path / "part-1.sqlite3"
    before = part.read_bytes()
    part.touch()
    stamp = part.stat().st_mtime_ns
    assert _run(str(tmp_path), "2", "--only", "1", "--if-missing") == 0
    assert part.read_bytes() == before and part.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("again", [["--only", "0"], []])
def test_without_if_missing_existing_partitions_are_refused_never_replaced(
    tmp_path: Path, again: list[str], capsys: pytest.CaptureFixture
) -> None:
    assert _run(str(tmp_path), "2", "--only", "0") == 0
    part = tmp_path / "part-0.sqlite3"
    part.write_bytes(part.read_bytes() + b"snapshots")  # stands for a used partition
    assert _run(str(tmp_path), "2", *again) == 2
    assert "never replaced" in capsys.readouterr().err
    assert part.read_bytes().endswith(b"snapshots")
    assert [p.name for p in tmp_path.iterdir()] == ["part-0.sqlite3"]


def test_a_negative_process_id_is_refused(tmp_path: Path) -> None:
    assert _run(str(tmp_path), "2", "--only", "-1") == 2
