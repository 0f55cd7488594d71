"""The compose topology (code server + webserver + daemon) on loopback, over the embedded instance.

`gateway ui` and the browser test both start the platform this way, from the committed
workspace.yaml and dagster.yaml, so the deploy configuration is exercised without Docker.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gateway_pipelines import settings
from gateway_pipelines.runtime.instance import write_workspace
from gateway_pipelines.runtime.paths import StatePaths


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


@dataclass
class PlatformServices:
    url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def wait(self) -> int:
        try:
            while all(p.poll() is None for p in self.processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return max((p.returncode or 0) for p in self.processes)

    def __enter__(self) -> PlatformServices:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_http(url: str, procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s; logs: {', '.join(map(str, logs))}")


def _wait_grpc(port: int, proc: subprocess.Popen, log: Path, timeout: float, env: dict) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"code server exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        check = subprocess.run(
            [_bin("dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"],
            env=env, capture_output=True,
        )
        if check.returncode == 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"code server on port {port} not healthy within {timeout:.0f}s; see {log}")


def start_services(
    paths: StatePaths,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    daemon: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> PlatformServices:
    env = dict(settings.environment() if env is None else env)
    env["DAGSTER_HOME"] = str(paths.dagster_home)
    env["GATEWAY_HOME"] = str(paths.home)
    logdir = paths.home / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    code_port = free_port(host)
    workspace = write_workspace(paths, host, code_port)
    services = PlatformServices(url=f"http://{host}:{port}")

    def spawn(name: str, args: list[str]) -> subprocess.Popen:
        log = logdir / f"{name}.log"
        handle = open(log, "w")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=str(paths.home))
        services.processes.append(proc)
        services.logs.append(log)
        return proc

    try:
        code = spawn("code-server", [_bin("dagster"), "api", "grpc", "-m", "gateway_pipelines.definitions",
                                     "-h", host, "-p", str(code_port)])
        _wait_grpc(code_port, code, services.logs[0], timeout, env)
        spawn("webserver", [_bin("dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)])
        if daemon:
            spawn("daemon", [_bin("dagster-daemon"), "run", "-w", str(workspace)])
        _wait_http(f"{services.url}/server_info", services.processes, services.logs, timeout)
    except BaseException:
        services.stop()
        raise
    return services
