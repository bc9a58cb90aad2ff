"""fetch_tracking: one carrier account's trackers for its shipments in flight → our scans → the history."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from lastmile.carriers.accounts import TrackingAccount, vendor_of
from lastmile.carriers.tracking import TRACKING_QUERY_COLUMNS
from lastmile.config import Settings
from lastmile.steps.common import quarantine, record_step, utc_instant
from lastmile.steps.feeds import read_feed
from lastmile.store import progress, schema
from lastmile.store.db import batch_key_for, engine_for, upsert, writing

log = logging.getLogger("lastmile")


class FeedDown(RuntimeError):
    """A carrier account could not be read this run; its parcels are in an unknown state."""

    def __init__(self, account: str, detail: str) -> None:
        super().__init__(f"carrier feed {account!r} is down: {detail}")
        self.account = account
        self.detail = detail


def tracking_accounts(settings: Settings) -> list[str]:
    """The carrier accounts to fetch, one mapped task each."""
    return list(settings.tracking_accounts)


def _routed_to(account: str, settings: Settings) -> Any:
    """Shipments fetched through `account`: those naming it, and unnamed ones for the first account."""
    col = schema.shipments.c.tracking_account
    if account == settings.tracking_accounts[0]:
        return or_(col == account, col.is_(None), col.not_in(settings.tracking_accounts))
    return col == account


def fetch_tracking(settings: Settings, as_of: datetime, account: TrackingAccount | None = None) -> dict[str, Any]:
    """Poll one carrier account for its shipments not finished by `as_of`; store new scans and estimates.

    A feed that fails still keeps what it returned before failing; its health row says it is down,
    and FeedDown is raised so ops see the account's task fail while the other accounts go on.
    """
    as_of = utc_instant(as_of)
    account = account or TrackingAccount(settings.tracking_accounts[0], vendor_of(settings.tracking_accounts[0]))
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        # What a carrier feed is asked with (lastmile.carriers.tracking.TrackingSource), not the whole
        # row (at 1M shipments, 100k of them are in flight).
        sh = schema.shipments.c
        active = [dict(zip(TRACKING_QUERY_COLUMNS, row, strict=True)) for row in conn.execute(
            select(*(sh[c] for c in TRACKING_QUERY_COLUMNS)).where(
                sh.shipment_id.in_(progress.in_flight(as_of)), sh.created_at <= as_of,
                _routed_to(account.name, settings))).tuples().all()]
    feed = read_feed(settings, account, active, as_of)
    parsed, error = feed.parsed, feed.error
    for scan in parsed.scans:
        scan["first_seen_at"] = as_of
    with writing(engine) as conn:
        new_scans = upsert(conn, schema.scans, parsed.scans)
        progress.record_scans(conn, parsed.scans)
        upsert(conn, schema.estimates, parsed.estimates, update=["observed_at"], only_if_newer="observed_at")
        quarantine(conn, parsed.rejections, as_of)
        # (a join from this run's scans: an IN over the account's shipments would read every shipment)
        updated = conn.execute(select(func.count(func.distinct(schema.scans.c.shipment_id))).select_from(
            schema.scans.join(schema.shipments, schema.shipments.c.shipment_id == schema.scans.c.shipment_id)).where(
            schema.scans.c.first_seen_at == as_of, _routed_to(account.name, settings))).scalar_one()
        unmapped = sum(1 for s in parsed.scans if s["status"] == "unmapped")
        upsert(conn, schema.feed_health, [{
            "account": account.name, "batch_key": batch_key_for(as_of), "vendor": account.vendor, "as_of": as_of,
            "ok": error is None, "shipments_asked": len(active), "trackers_received": feed.received,
            "trackers_updated": updated, "scans_new": new_scans, "error": error}],
            update=["vendor", "as_of", "ok", "shipments_asked", "trackers_received", "trackers_updated",
                    "scans_new", "error"])
        counts = record_step(conn, as_of, f"fetch_tracking[{account.name}]", {
            "account": account.name, "ok": error is None,
            "trackers_polled": len(active), "trackers_parsed": parsed.trackers_ok, "scans_seen": len(parsed.scans),
            "scans_new": new_scans, "trackers_updated": updated, "scans_unmapped": unmapped,
            "quarantined": len(parsed.rejections)})
    if error is not None:
        log.error("ALERT carrier feed %s (%s) is down: %s; its %d active shipments are in an unknown state",
                  account.name, account.vendor, error, len(active))
        raise FeedDown(account.name, error)
    return counts
