"""A service (or `advex up`) run as a real process, its stderr read all
along on a thread, so it never blocks writing its log and a test can wait
for the line that says it is ready."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path


class LoggedProcess:
    def __init__(self, argv: list[str], env: dict[str, str], ready: str, cwd: Path | None = None):
        self.ready_marker = ready
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if self.ready_marker in line:
                self._ready.set()
        self._ready.set()  # the process exited: the test reads why from the log

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def ready_line(self, timeout: float = 300) -> str:
        """The first log line holding the ready marker; AssertionError with
        the log when the process exits or times out without one."""
        self._ready.wait(timeout=timeout)
        for line in self.lines:
            if self.ready_marker in line:
                return line
        raise AssertionError(f"no {self.ready_marker!r} in the log:\n{self.log}")

    def wait_for_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)  # the rest of the log
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
