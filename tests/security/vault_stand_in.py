"""A stand-in for a Vault server (MOCK: no Vault binary can run on this machine).

It answers the few HTTP endpoints abflow's secret source calls, in Vault's documented wire
format, so the real code path (the ``hvac`` client, its auth calls, its error mapping) runs
against a socket: KV v2 and v1 reads, AppRole and Kubernetes logins, 403 and 404 errors.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["VaultStandIn"]


class VaultStandIn:
    """Serves ``kv2[mount][path]`` / ``kv1[mount][path]`` to holders of a valid token."""

    def __init__(self) -> None:
        self.kv2: dict[str, dict[str, dict[str, Any]]] = {}
        self.kv1: dict[str, dict[str, dict[str, Any]]] = {}
        self.tokens = {"root-token"}
        self.approles = {("role-1", "secret-1"): "approle-token"}
        self.k8s_roles = {("abflow", "service-account-jwt"): "k8s-token"}
        self.requests: list[tuple[str, str, str | None, str | None]] = []
        """(method, path, token, namespace) of every request, for assertions."""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> str | None:
                token = self.headers.get("X-Vault-Token")
                namespace = self.headers.get("X-Vault-Namespace")
                stand_in.requests.append((self.command, self.path, token, namespace))
                return token

            def do_GET(self) -> None:
                token = self._record()
                if token not in stand_in.tokens:
                    self._reply(403, {"errors": ["permission denied"]})
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 4 and parts[0] == "v1" and parts[2] == "data":
                    found = stand_in.kv2.get(parts[1], {}).get("/".join(parts[3:]))
                    if found is None:
                        self._reply(404, {"errors": []})
                        return
                    meta = {"deletion_time": "", "destroyed": False, "version": 1}
                    self._reply(200, {"data": {"data": found, "metadata": meta}})
                    return
                found = stand_in.kv1.get(parts[1], {}).get("/".join(parts[2:]))
                if found is None:
                    self._reply(404, {"errors": []})
                    return
                self._reply(200, {"data": found})

            def do_POST(self) -> None:
                self._record()
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/v1/auth/approle/login":
                    token = stand_in.approles.get((body.get("role_id"), body.get("secret_id")))
                elif self.path == "/v1/auth/kubernetes/login":
                    token = stand_in.k8s_roles.get((body.get("role"), body.get("jwt")))
                else:
                    self._reply(404, {"errors": []})
                    return
                if token is None:
                    self._reply(400, {"errors": ["invalid credentials"]})
                    return
                stand_in.tokens.add(token)
                self._reply(200, {"auth": {"client_token": token, "lease_duration": 3600}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> VaultStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
