"""A chat-style incoming webhook (Slack-compatible: POST JSON, answer 200 "ok") that records posts.

Ops alerts reach it through Apprise: an `apprise` Connection with `json://127.0.0.1:PORT/hooks/ops`
posts Apprise's JSON payload ({"version", "title", "message", "attachments", "type"}: `alerts()`);
an `http` Connection whose host is `url` posts `{"text": ...}` as before (`texts()`).
"""

from __future__ import annotations

from typing import Any

from servers.base import ScriptedServer, VendorHandler


class WebhookHandler(VendorHandler):
    content_type = "text/plain"

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        record = self._read()
        if self.play(record, self.vendor._next_behaviour()):
            return
        self._send_bytes(record, 200, b"ok", content_type="text/plain")


class WebhookServer(ScriptedServer):
    handler_class = WebhookHandler
    name = "webhook-server"

    def error_payload(self, step: Any) -> Any:
        return {"error": f"HTTP {step.status}"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ops"

    def texts(self) -> list[str]:
        return [r.body["text"] for r in self.requests if isinstance(r.body, dict) and "text" in r.body]

    def apprise_url(self, auth: str = "") -> str:
        """This server as an Apprise URL (json:// is Apprise's generic JSON webhook); `auth` "user:pass"."""
        return f"json://{auth + '@' if auth else ''}127.0.0.1:{self.port}/hooks/ops"

    def alerts(self) -> list[dict[str, Any]]:
        """The Apprise JSON posts: {"version", "title", "message", "attachments", "type"}."""
        return [r.body for r in self.requests if isinstance(r.body, dict) and "message" in r.body]
