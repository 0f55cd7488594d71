"""A process killed with -9 leaves its pid in the embedded server's handle list; the next start drops it,
so the server can still stop when its last live user exits."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway_pipelines.lib.warehouse import embedded_data_dir, prune_dead_handles


def test_dead_pids_are_pruned_and_live_ones_kept(platform):
    paths, _ = platform
    handles = embedded_data_dir(paths.home) / ".handle_pids.json"
    before = json.loads(handles.read_text())
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    victim.kill()
    victim.wait()
    handles.write_text(json.dumps(before + [victim.pid]))
    assert prune_dead_handles(embedded_data_dir(paths.home)) == [victim.pid]
    assert json.loads(handles.read_text()) == before  # this process (alive) stays registered
    assert prune_dead_handles(embedded_data_dir(paths.home)) == []
