"""The recovery layout of deploy/ (compose and Kubernetes) works with bytewax: each process keeps
only its own partition on its own volume, created by `fulfil recovery-init --only I --if-missing`.

Two processes of a real (tiny) bytewax cluster are killed with SIGKILL and restarted: every
source partition resumes from its snapshot. Re-running the init (as an init container does at
every start) leaves the partitions alone.

(What bytewax does when one volume is replaced by a fresh partition is not pinned here: in trials
it either refused to start or resumed with that partition's state rebuilt from scratch; see
docs/operations.md, "A recovery volume is lost".)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fulfil.infra import free_port
from tests.test_deploy.helpers import ROOT


def _init(directory: Path, partitions: int, only: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fulfil.cli", "recovery-init", str(directory), str(partitions),
         "--only", str(only), "--if-missing"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def _cluster(dirs: list[Path], log_dir: Path, run: int) -> list[subprocess.Popen]:
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in dirs)
    procs = []
    for i, d in enumerate(dirs):
        log = open(log_dir / f"probe-{run}-{i}.log", "wb")  # noqa: SIM115 - closed by the OS
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.test_deploy.recovery_probe", str(i), addresses, str(d)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "RUST_BACKTRACE": "0"}))
    return procs


def _resumes(log_dir: Path, run: int) -> dict[str, str]:
    out = {}
    for log in log_dir.glob(f"probe-{run}-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("resume "):
                _, part, state = line.split()
                out[part] = state
    return out


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)


@pytest.mark.slow
def test_per_process_partitions_survive_kill_9_and_repeated_init(
    tmp_path: Path,
) -> None:
    dirs = [tmp_path / "w0", tmp_path / "w1"]
    for i, d in enumerate(dirs):
        assert "initialised recovery partition" in _init(d, 2, i)
    assert [p.name for p in sorted(dirs[0].iterdir())] == ["part-0.sqlite3"]
    assert [p.name for p in sorted(dirs[1].iterdir())] == ["part-1.sqlite3"]

    procs = _cluster(dirs, tmp_path, 1)
    try:
        deadline = time.monotonic() + 60
        while len(_resumes(tmp_path, 1)) < 4:  # both processes built their parts
            assert time.monotonic() < deadline, "the first run did not start"
            assert all(p.poll() is None for p in procs)
            time.sleep(0.1)
        time.sleep(2.0)  # several epochs (0.2 s) snapshotted
    finally:
        _kill(procs)
    assert set(_resumes(tmp_path, 1).values()) == {"None"}

    # an init container runs again at every start: it must leave the partitions alone
    for i, d in enumerate(dirs):
        assert "left as they are" in _init(d, 2, i)

    procs = _cluster(dirs, tmp_path, 2)
    try:
        deadline = time.monotonic() + 60
        while len(_resumes(tmp_path, 2)) < 4:
            assert time.monotonic() < deadline, "the restart did not resume"
            time.sleep(0.1)
    finally:
        _kill(procs)
    resumed = _resumes(tmp_path, 2)
    assert all(state != "None" and int(state) > 0 for state in resumed.values()), resumed
