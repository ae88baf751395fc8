"""A real `sharedcare serve` process on a free loopback port, for tests that need real concurrency
or a real crash (`kill -9`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Credentials of the node's all-scopes system client (minted once the store exists)."""
        assert self.token is not None, "start the server first"
        return {"Authorization": f"Bearer {self.token}"}

    def _mint(self) -> None:
        from sharedcare.access.tokens import TokenService
        from sharedcare.settings import Settings
        from sharedcare.storage import database
        from sharedcare.storage.oauth import OAuthStore
        from tests.conftest import NODE_CLIENT

        engine = database.make_engine(self.database_url)
        try:
            tokens = TokenService(OAuthStore(engine), Settings(database_url=self.database_url))
            self.token = tokens.issue_for(NODE_CLIENT, "tests", "system/*.cruds")
        finally:
            engine.dispose()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> LiveServer:
        env = {**os.environ, "SHAREDCARE_DATABASE_URL": self.database_url, "SHAREDCARE_BASE_URL": self.base}
        log_path = self.log_dir / f"server-{self.port}.log"
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sharedcare.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=1).status_code == 200:
                    if self.token is None:
                        self._mint()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, exactly like a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
