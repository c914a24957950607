"""Helper servers in their own processes, so this process holds only the client side."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
from typing import Final, Self

_URL_RE: Final = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 10.0


class ServerProcess:
    """``python -m MODULE ARGS`` that prints ``... listening on http://127.0.0.1:PORT``.

    ``stop()`` (or leaving ``async with``) terminates it, and kills it if it does not
    exit in time; call it on every path.
    """

    def __init__(self, name: str, module: str, *args: str) -> None:
        """Describe the process; nothing starts before ``async with``."""
        self.name = name
        self._argv = [sys.executable, "-m", module, *args]
        self._proc: asyncio.subprocess.Process | None = None
        # Its logs go to a file, not a pipe nobody reads (a full pipe would block it).
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.url = ""

    async def __aenter__(self) -> Self:
        """Start the process."""
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Stop the process."""
        await self.stop()

    async def start(self) -> None:
        """Start the process and wait for its URL (stopping it again on failure)."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._log,
            )
            self.url = await self._read_url()
        except BaseException:
            await self.stop()
            raise

    async def _read_url(self) -> str:
        return await self.read_value(_URL_RE)

    async def read_value(self, pattern: re.Pattern[str]) -> str:
        """Read the process's output up to a line matching ``pattern``; return group 1."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while line := await self._proc.stdout.readline():
                    if match := pattern.search(line.decode(errors="replace")):
                        return match[1]
        except TimeoutError:
            pass
        raise RuntimeError(f"{self.name} did not come up: {self._log_tail()}")

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace").strip() or "no output"

    async def stop(self) -> None:
        """Terminate the process (kill it after a timeout); idempotent."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_STOP_TIMEOUT):
                        await proc.wait()
        finally:
            # Timed out, or this stop was itself cancelled: never leave it running.
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self._log.close()
