"""A real Synapse homeserver for tests: started on a free loopback port in a temporary folder."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CONFIG_TEMPLATE = Path(__file__).with_name("synapse-homeserver.yaml")
SHARED_SECRET = "ci-only-shared-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds: closed connections in TIME_WAIT do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Synapse:
    """One homeserver process; `stop()` and `start()` again keep its data and its port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.config_path = folder / "homeserver.yaml"
        self._log = None
        text = CONFIG_TEMPLATE.read_text().replace("DATA_DIR", str(folder))
        text = text.replace("8008", str(self.port))
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        self._command = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]
        subprocess.run([*self._command, "--generate-keys"], cwd=folder, check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60) -> None:
        if not _port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is taken; a stale server would answer the readiness poll")
        self._log = open(self.folder / "synapse.out", "ab")
        self.process = subprocess.Popen(self._command, cwd=self.folder, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"synapse exited with {self.process.returncode}; see {self.folder / 'synapse.out'}")
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"synapse did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self._log:
            self._log.close()
            self._log = None
        deadline = time.monotonic() + 10
        while not _port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def register(self, name: str, password: str, admin: bool = False) -> str:
        """A new account through the shared-secret admin API; returns its Matrix id."""
        path = "/_synapse/admin/v1/register"
        nonce = self._request("GET", path)["nonce"]
        message = "\x00".join((nonce, name, password, "admin" if admin else "notadmin"))
        mac = hmac.new(SHARED_SECRET.encode(), message.encode(), hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": name, "password": password, "admin": admin, "mac": mac}
        return self._request("POST", path, body)["user_id"]
