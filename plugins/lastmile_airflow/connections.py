"""Airflow Connections -> lastmile client configs. Secrets stay in the Connection, never in code."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lastmile.sendgrid_client import SendGridConfig


def base_url(host: str | None, port: int | None, default: str) -> str:
    """A Connection's host as a base URL: 'http://127.0.0.1:8025' stays, 'api.x.com' gets https://."""
    if not host:
        return default
    url = host if "://" in host else f"https://{host}"
    if port and url.count(":") < 2:
        url = f"{url}:{port}"
    return url.rstrip("/")


def sendgrid_config(conn_id: str = "sendgrid_default") -> SendGridConfig:
    """SendGrid settings from the Connection: password = API key; host overrides the API base URL;
    extra may set sandbox_mode, asm_group_id (follow-ups only) and timeout (seconds)."""
    from airflow.sdk import Connection

    from lastmile.sendgrid_client import DEFAULT_HOST, SendGridConfig

    conn = Connection.get(conn_id)
    if not conn.password:
        raise ValueError(f"Airflow connection {conn_id!r} has no password: put the SendGrid API key there")
    extra = conn.extra_dejson or {}
    group = extra.get("asm_group_id")
    return SendGridConfig(api_key=conn.password, host=base_url(conn.host, conn.port, DEFAULT_HOST),
                          sandbox_mode=bool(extra.get("sandbox_mode", False)),
                          asm_group_id=int(group) if group else None, timeout=float(extra.get("timeout", 10)))
