"""A local HTTP receiver of Alertmanager's webhook posts: the tests' stand-in for a pager (or for the
intake), recording what Alertmanager really sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST: path, Authorization header and JSON body."""

    def __init__(self) -> None:
        posts: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                              "content_type": self.headers.get("Content-Type"), "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.posts = posts
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, status: str) -> dict[str, Any] | None:
        return next((p for p in self.posts if p["body"]["status"] == status), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self, alertname: str, status: str = "firing", **labels: str) -> list[dict[str, Any]]:
        """Every alert of that name and status (each alert's own, a post may carry both) received so far."""
        return [alert for post in list(self.posts) for alert in post["body"]["alerts"]
                if alert["labels"].get("alertname") == alertname and alert["status"] == status
                and labels.items() <= alert["labels"].items()]
