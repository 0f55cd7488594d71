"""dbt started through `gateway-dbt` dies with the process that started it (it used to outlive a killed
run worker). The test kills a parent with -9 and watches its child go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from gateway_pipelines.defs.resources import dbt_executable

PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c",
    "from gateway_pipelines.runtime.dbt_child import exec_dying_with_parent; exec_dying_with_parent(['sleep', '120'])"])
print(child.pid, flush=True)
child.wait()
"""


def _signal_state(pid: int) -> str:
    try:
        lines = open(f"/proc/{pid}/status").read().splitlines()
    except OSError:
        return "gone"
    return "; ".join(x for x in lines if x.startswith(("State", "PPid", "SigBlk", "SigIgn")))


def _status(proc):
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return None


def test_a_child_started_by_the_shim_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    child = psutil.Process(child_pid)
    deadline = time.monotonic() + 10
    while "sleep" not in child.name() and time.monotonic() < deadline:  # until it has become `sleep`
        time.sleep(0.05)
    assert child.is_running() and "sleep" in child.name()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    gone, alive = psutil.wait_procs([child], timeout=10)
    # exited but not yet reaped by the orphan reaper (PID 1 may reap late on a busy machine) is dead too
    zombies = [p for p in alive if _status(p) in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD, None)]
    assert gone or zombies, f"the child outlived its killed parent; its signals: {_signal_state(child_pid)}"


def test_runs_use_the_shim():
    assert dbt_executable().endswith("gateway-dbt")
