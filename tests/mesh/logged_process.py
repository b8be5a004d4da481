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
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True  # the process exited: the test reads why from the log
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300, after: int = 0) -> str:
        """The first log line from index `after` on that holds `text`;
        AssertionError with the log when the process exits or times out
        without one."""
        def found():
            return next((line for line in self.lines[after:] if text in line), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._ended, timeout=timeout)
            line = found()
        if line is None:
            raise AssertionError(f"no {text!r} in the log:\n{self.log}")
        return line

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def ready_line(self, timeout: float = 300) -> str:
        """The first log line holding the ready marker (see wait_for)."""
        return self.wait_for(self.ready_marker, timeout)

    def wait_for_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)  # the rest of the log
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
