"""lastmile as an Airflow provider: the vendor Connection types, their hooks and their UI forms.

Registered by the `apache_airflow_provider` entry point in pyproject.toml; Airflow's ProvidersManager
reads it from the installed package's metadata (so after changing the entry point, reinstall).

Airflow 3.3 takes connection forms from here ("conn-fields" for the extras, "ui-field-behaviour" for the
standard fields) without importing the hooks; a hook's get_connection_form_widgets() /
get_ui_field_behaviour() are deprecated there and only read for types declared without this metadata.

This module imports nothing: Airflow loads every provider's info in one loop that does not catch errors,
so a failing import here (the sendgrid library, say) would hide every provider. Hence the vendor base URLs
are written out below; tests/unit/test_connections.py holds them equal to the clients' constants.
"""

from __future__ import annotations

from typing import Any

EASYPOST_BASE_URL = "https://api.easypost.com/v2"  # lastmile.carriers.easypost_client.DEFAULT_BASE_URL
AFTERSHIP_BASE_URL = "https://api.aftership.com/tracking/2026-07"  # ...aftership_client.DEFAULT_BASE_URL
SENDGRID_BASE_URL = "https://api.sendgrid.com"  # lastmile.email.sendgrid_client.DEFAULT_HOST

HOOKS = "lastmile_airflow.hooks"

# Read by account_from_fields / sendgrid_config_from_fields: "timeout" in seconds, 10 when absent.
_TIMEOUT = {
    "label": "Timeout (seconds)",
    "description": "For connecting and for each read; a slow answer is retried with backoff.",
    "schema": {"type": ["number", "null"], "default": 10},
}


def _api_form(vendor: str, base_url: str) -> dict[str, Any]:
    """Key in the password field (masked, never logged); host only to point at another server."""
    return {
        "hidden-fields": ["login", "schema"],
        "relabeling": {"password": "API key", "host": "API base URL (optional)", "port": "Port (optional)"},
        "placeholders": {
            "password": f"the {vendor} API key",
            "host": base_url,
            "port": "only when the base URL has none",
        },
    }


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "lastmile",  # must equal the distribution's name in pyproject.toml
        "name": "lastmile",
        "description": "lastmile's vendor connections: EasyPost and AfterShip tracking accounts, SendGrid e-mail.",
        "connection-types": [
            {
                "connection-type": "easypost",
                "hook-class-name": f"{HOOKS}.EasyPostHook",
                "hook-name": "EasyPost (lastmile)",
                "ui-field-behaviour": _api_form("EasyPost", EASYPOST_BASE_URL),
                "conn-fields": {
                    "timeout": _TIMEOUT,
                    # (Airflow masks an extra whose name holds "secret" in logs and the UI)
                    "webhook_secret": {
                        "label": "Webhook secret",
                        "description": "The secret of the EasyPost webhook pointed at "
                                       "/lastmile/easypost/<this connection id>/events: with it, an hour reads "
                                       "the trackers EasyPost pushed instead of asking about every parcel.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
            {
                "connection-type": "aftership",
                "hook-class-name": f"{HOOKS}.AfterShipHook",
                "hook-name": "AfterShip (lastmile)",
                "ui-field-behaviour": _api_form("AfterShip", AFTERSHIP_BASE_URL),
                "conn-fields": {"timeout": _TIMEOUT},
            },
            {
                "connection-type": "sendgrid",
                "hook-class-name": f"{HOOKS}.SendGridHook",
                "hook-name": "SendGrid (lastmile)",
                "ui-field-behaviour": _api_form("SendGrid", SENDGRID_BASE_URL),
                "conn-fields": {
                    "sandbox_mode": {
                        "label": "Sandbox mode",
                        "description": "SendGrid checks each message and sends none.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "asm_group_id": {
                        "label": "Unsubscribe group id",
                        "description": "SendGrid unsubscribe group (ASM) put on follow-up messages only.",
                        "schema": {"type": ["integer", "null"]},
                    },
                    "timeout": _TIMEOUT,
                    "scheme": {
                        "label": "Scheme of the host",
                        "description": "Used when the host has no http:// or https:// (https if empty).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
        ],
    }
