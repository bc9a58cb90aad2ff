"""Hooks for the vendor Connection types lastmile registers (easypost, aftership, sendgrid).

They exist so that Airflow knows these types: the UI offers them with their own form (declared in
lastmile_airflow.provider, which is where Airflow 3.3 reads forms from) and its `Test` button works
where a deployment enables it (`[core] test_connection`, off by default in Airflow 3). The work itself
is done by lastmile's own clients: get_conn() hands back the client config, read from the Connection
by the same functions the tasks use (lastmile_airflow.connections), so the form and the tasks cannot
disagree about which field means what.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook


class _VendorApiHook(BaseHook):
    """A vendor API Connection: password = API key, host (and port) = optional base URL override."""

    conn_name_attr: str
    default_conn_name: str
    conn_type: str
    hook_name: str

    def __init__(self, conn_id: str, logger_name: str | None = None) -> None:
        super().__init__(logger_name=logger_name)
        self.conn_id = conn_id
        setattr(self, self.conn_name_attr, conn_id)

    def _base_url_and_timeout(self, config: Any) -> tuple[str | None, float]:
        """The base URL the client will call (None: the vendor's public API) and its timeout."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """Check the Connection offline: a key, a usable base URL, a positive timeout.

        Offline on purpose: the API server runs this, a vendor call would spend the shop's rate limit
        and hang the form when the vendor is slow; a wrong key shows on the first fetch (401, not retried).
        Messages never hold the key: the config builders word their errors without it.
        """
        try:
            config = self.get_conn()
        except ValueError as err:  # AccountError, SendGridConfigError, a non-numeric timeout
            return False, str(err)
        base_url, timeout = self._base_url_and_timeout(config)
        if base_url is not None:
            try:
                parts = urlsplit(base_url)
                usable = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:  # e.g. an unbalanced '[' in the host
                usable = False
            if not usable:
                return False, f"connection {self.conn_id!r}: the host does not make an http(s) base URL"
        if not timeout > 0:
            return False, f"connection {self.conn_id!r}: extra timeout must be more than 0 seconds"
        return True, (f"{self.hook_name} connection {self.conn_id!r} is complete "
                      f"({base_url or 'public API'}); the vendor checks the key itself on the first call")


class _CarrierHook(_VendorApiHook):
    def get_conn(self) -> Any:
        """The carrier account (lastmile.carriers.accounts.TrackingAccount) this Connection describes."""
        from lastmile_airflow.connections import tracking_account

        return tracking_account(self.conn_id)

    def _base_url_and_timeout(self, config: Any) -> tuple[str | None, float]:
        return config.base_url, config.timeout


class EasyPostHook(_CarrierHook):
    """An EasyPost account. The type name must stay `easypost`: accounts.vendor_of reads the vendor from it."""

    conn_name_attr = "easypost_conn_id"
    default_conn_name = "easypost_default"
    conn_type = "easypost"
    hook_name = "EasyPost (lastmile)"

    def __init__(self, easypost_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(easypost_conn_id, **kwargs)


class AfterShipHook(_CarrierHook):
    """An AfterShip account. The type name must stay `aftership`: accounts.vendor_of reads the vendor from it."""

    conn_name_attr = "aftership_conn_id"
    default_conn_name = "aftership_default"
    conn_type = "aftership"
    hook_name = "AfterShip (lastmile)"

    def __init__(self, aftership_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(aftership_conn_id, **kwargs)


class SendGridHook(_VendorApiHook):
    """lastmile's SendGrid account for customer e-mail."""

    conn_name_attr = "sendgrid_conn_id"
    default_conn_name = "sendgrid_default"
    conn_type = "sendgrid"
    hook_name = "SendGrid (lastmile)"

    def __init__(self, sendgrid_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(sendgrid_conn_id, **kwargs)

    def get_conn(self) -> Any:
        """The lastmile.email.sendgrid_client.SendGridConfig this Connection describes."""
        from lastmile_airflow.connections import sendgrid_config

        return sendgrid_config(self.conn_id)

    def _base_url_and_timeout(self, config: Any) -> tuple[str | None, float]:
        return config.host, config.timeout
