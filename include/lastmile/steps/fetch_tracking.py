"""fetch_tracking: one carrier account's trackers for its shipments in flight → our scans → the history."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select

from lastmile.carriers.accounts import TrackingAccount, lists_changes, vendor_of
from lastmile.carriers.tracking import TRACKING_QUERY_COLUMNS
from lastmile.config import Settings
from lastmile.steps.common import quarantine, record_step, utc_instant
from lastmile.steps.feeds import read_feed
from lastmile.store import learned, progress, schema
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing
from lastmile.store.queries import chunks

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


def _routed_to(account: str, settings: Settings, col: Any = schema.shipments.c.tracking_account) -> Any:
    """Shipments fetched through `account`: those naming it, and unnamed ones for the first account
    (`col`: the tracking_account column the query reads, the shipments' own or tracking_state's copy)."""
    if account == settings.tracking_accounts[0]:
        return or_(col == account, col.is_(None), col.not_in(settings.tracking_accounts))
    return col == account


# How far before the previous successful fetch a listing of changes reaches: the vendor's clock
# and ours differ, and a tracker being written while we listed shows its change a moment later
# (a scan listed twice is stored once).
LISTING_OVERLAP = timedelta(minutes=15)


def changes_since(conn: Connection, settings: Settings, account: TrackingAccount, as_of: datetime) -> datetime | None:
    """The instant to ask `account` what changed since, or None to ask about every parcel in flight.

    Only an account that lists changes (accounts.lists_changes: its vendor lists them, or pushes them
    to our webhook) is asked what changed, and only when this
    account's latest successful fetch before `as_of` was the same UTC day (the first fetch of each day
    asks about every parcel: a parcel the vendor was never asked to track, or stopped tracking, is
    registered then, and whatever a listing missed is read), was made with the same routing (vendor,
    address, accounts configured: a parcel another account read until now is not known to this
    one) and no fetch of this account is recorded after `as_of` (a past instant run again, a
    backfill: asked in full, like the first run). A fetch that failed leaves the earlier success as
    the start: the next listing covers the gap."""
    if not lists_changes(account):
        return None
    fh, rs = schema.feed_health.c, schema.run_steps.c
    mine, key = fh.account == account.name, batch_key_for(as_of)  # (batch keys sort as their instants)
    if conn.execute(select(fh.batch_key).where(mine, fh.batch_key > key).limit(1)).first() is not None:
        return None
    last = conn.execute(select(fh.batch_key, fh.as_of).where(mine, fh.ok.is_(True), fh.batch_key < key)
                        .order_by(fh.batch_key.desc()).limit(1)).first()
    if last is None or utc(last.as_of).date() != as_of.date():  # type: ignore[union-attr]
        return None
    counts = conn.execute(select(rs.counts).where(rs.batch_key == last.batch_key,
                                                  rs.step == f"fetch_tracking[{account.name}]")).scalar()
    if counts is None or json.loads(counts).get("routing") != routing(settings, account):
        return None
    return utc(last.as_of) - LISTING_OVERLAP  # type: ignore[operator]


def _now() -> datetime:
    """The wall clock (one place, so tests can hold it)."""
    return datetime.now(UTC)


def read_in_full_at(conn: Connection, account: TrackingAccount, as_of: datetime) -> datetime | None:
    """When `account` was last asked about every parcel before `as_of`: its first successful fetch of
    as_of's UTC day (changes_since asks the day's first fetch in full), at the moment the carrier was
    actually asked, when later than its run's instant (a queued or long fetch reads the carrier's
    present, not its run's instant)."""
    fh, rs = schema.feed_health.c, schema.run_steps.c
    day = batch_key_for(as_of.replace(hour=0, minute=0, second=0, microsecond=0))
    first = conn.execute(select(fh.batch_key, fh.as_of).where(
        fh.account == account.name, fh.ok.is_(True), fh.batch_key >= day, fh.batch_key < batch_key_for(as_of))
        .order_by(fh.batch_key).limit(1)).first()
    if first is None:
        return None
    counts = conn.execute(select(rs.counts).where(rs.batch_key == first.batch_key,
                                                  rs.step == f"fetch_tracking[{account.name}]")).scalar()
    asked = json.loads(counts).get("asked_at") if counts else None
    return max(utc(first.as_of), utc(asked)) if asked else utc(first.as_of)  # type: ignore[type-var,return-value]


def routing(settings: Settings, account: TrackingAccount) -> str:
    """A fingerprint of what decides which parcels an account reads and where (not its key, nor its
    secret: only whether changes are pushed, so the first fetch after a webhook is set up asks in full)."""
    parts: list[Any] = [account.vendor, account.base_url or "", list(settings.tracking_accounts)]
    if account.webhook_secret:
        parts.append("pushed")
    return learned.version(*parts)


def _rows(conn: Connection, stmt: Any) -> list[dict[str, Any]]:
    # (fetched at once, not a row at a time: a poll lists every parcel in flight; a Row is a tuple)
    return [dict(zip(TRACKING_QUERY_COLUMNS, row, strict=True)) for row in conn.execute(stmt).all()]


def _in_flight(conn: Connection, settings: Settings, account: str, as_of: datetime) -> list[dict[str, Any]]:
    """The account's parcels in flight, as a feed is asked about them (TRACKING_QUERY_COLUMNS, not the
    whole row: at 1M shipments 100k are in flight), from tracking_state's copy of them: one range
    of its poll index, not a lookup of each parcel in `shipments` (at 100k shipments those lookups
    took 30 ms of every polled hour on SQLite, 40 ms on Postgres)."""
    flying = progress.in_flight(as_of, *TRACKING_QUERY_COLUMNS[1:], "created_at", "tracking_account").subquery()
    return _rows(conn, select(*(flying.c[c] for c in TRACKING_QUERY_COLUMNS)).where(
        flying.c.tracking_code.is_not(None), flying.c.created_at <= as_of,
        _routed_to(account, settings, flying.c.tracking_account)))


def _in_flight_among(conn: Connection, settings: Settings, account: str, as_of: datetime, column: Any,
                     values: Iterable[str]) -> list[dict[str, Any]]:
    """The account's parcels in flight among a few, found through `column`'s index."""
    sh, ts = schema.shipments.c, schema.tracking_state.c
    flying = or_(ts.finished_at.is_(None), ts.finished_at > as_of)
    joined = schema.shipments.join(schema.tracking_state, ts.shipment_id == sh.shipment_id)
    return [row for part in chunks(values) for row in _rows(conn, select(
        *(sh[c] for c in TRACKING_QUERY_COLUMNS)).select_from(joined).where(
        column.in_(part), flying, sh.created_at <= as_of, _routed_to(account, settings)))]


def _not_pushed(conn: Connection, settings: Settings, account: TrackingAccount, as_of: datetime) -> int:
    """Of the account's parcels a full fetch at `as_of` found news for, how many EasyPost pushed
    nothing about in the last KEEP: news its pushes missed (a webhook disabled, refused, or pointed
    elsewhere; the listing then reads nothing and those parcels wait for the day's full fetch)."""
    from lastmile.carriers.easypost_events import KEEP

    te = schema.tracker_events.c
    pushed = select(te.tracking_code).where(te.account == account.name,
                                            te.tracking_code == schema.shipments.c.tracking_code,
                                            te.received_at > as_of - KEEP, te.received_at <= as_of).exists()
    return conn.execute(_with_news(settings, account, as_of, ~pushed)).scalar_one()


def _with_news(settings: Settings, account: TrackingAccount, as_of: datetime, *also: Any) -> Any:
    """How many of the account's shipments got a scan first seen at `as_of` (and `also`)."""
    sc, sh = schema.scans.c, schema.shipments.c
    # (a join from this run's scans: an IN over the account's shipments would read every shipment)
    return select(func.count(func.distinct(sc.shipment_id))).select_from(
        schema.scans.join(schema.shipments, sh.shipment_id == sc.shipment_id)).where(
        sc.first_seen_at == as_of, _routed_to(account.name, settings), *also)


def _new_since(conn: Connection, since: datetime, as_of: datetime) -> set[str]:
    """The shipments created, or written by a batch's load_orders, after `since`."""
    sh, bc = schema.shipments.c, schema.batch_changes.c
    new = set(conn.execute(select(sh.shipment_id).where(sh.created_at > since, sh.created_at <= as_of)).scalars())
    return new | set(conn.execute(select(bc.shipment_id).where(
        bc.batch_key > batch_key_for(since), bc.batch_key <= batch_key_for(as_of))).scalars())


def fetch_tracking(settings: Settings, as_of: datetime, account: TrackingAccount | None = None) -> dict[str, Any]:
    """Poll one carrier account for its shipments not finished by `as_of`; store new scans and estimates.

    A vendor that lists what changed is asked for that instead, once the day's first fetch has asked
    about every parcel (changes_since): the hour then costs what changed, not what is in flight.
    A feed that fails still keeps what it returned before failing; its health row says it is down,
    and FeedDown is raised so ops see the account's task fail while the other accounts go on.
    """
    as_of = utc_instant(as_of)
    account = account or TrackingAccount(settings.tracking_accounts[0], vendor_of(settings.tracking_accounts[0]))
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        since = changes_since(conn, settings, account, as_of)
        settled = read_in_full_at(conn, account, as_of) if since is not None and account.webhook_secret else None
        # Asked by code: every parcel in flight, or (the vendor lists what changed) only those it may
        # not know yet; the others' news comes from the listing.
        active = (_in_flight(conn, settings, account.name, as_of) if since is None else
                  _in_flight_among(conn, settings, account.name, as_of, schema.shipments.c.shipment_id,
                                   _new_since(conn, since, as_of)))

    def by_code(codes: list[str]) -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return _in_flight_among(conn, settings, account.name, as_of, schema.shipments.c.tracking_code, codes)

    asked_at = _now()  # (the carrier answers with its present: read_in_full_at)
    feed = read_feed(settings, account, active, as_of, since, by_code if since is not None else None,
                     settled)
    parsed, error = feed.parsed, feed.error
    for scan in parsed.scans:
        scan["first_seen_at"] = as_of
    with writing(engine) as conn:
        new_scans = upsert(conn, schema.scans, parsed.scans)
        progress.record_scans(conn, parsed.scans)
        upsert(conn, schema.estimates, parsed.estimates, update=["observed_at"], only_if_newer="observed_at")
        quarantine(conn, parsed.rejections, as_of)
        if since is None and account.webhook_secret:  # asked in full: what was pushed before is read
            from lastmile.carriers.easypost_events import prune

            prune(conn, account.name, as_of)
        updated = conn.execute(_with_news(settings, account, as_of)).scalar_one()
        not_pushed = _not_pushed(conn, settings, account, as_of) if since is None and account.webhook_secret else None
        unmapped = sum(1 for s in parsed.scans if s["status"] == "unmapped")
        upsert(conn, schema.feed_health, [{
            "account": account.name, "batch_key": batch_key_for(as_of), "vendor": account.vendor, "as_of": as_of,
            "ok": error is None, "shipments_asked": len(active), "trackers_received": feed.received,
            "trackers_updated": updated, "scans_new": new_scans, "error": error}],
            update=["vendor", "as_of", "ok", "shipments_asked", "trackers_received", "trackers_updated",
                    "scans_new", "error"])
        counts = record_step(conn, as_of, f"fetch_tracking[{account.name}]", {
            "account": account.name, "ok": error is None,
            "changes_since": since.isoformat() if since is not None else None, "routing": routing(settings, account),
            "asked_at": asked_at.isoformat(timespec="seconds"),
            "trackers_polled": len(active), "trackers_listed": feed.listed, "trackers_parsed": parsed.trackers_ok,
            "scans_seen": len(parsed.scans),
            "scans_new": new_scans, "trackers_updated": updated, "scans_unmapped": unmapped,
            "quarantined": len(parsed.rejections),
            **({"trackers_not_pushed": not_pushed} if not_pushed is not None else {})})
    if not_pushed:
        log.warning("carrier feed %s: the day's full fetch found news for %d parcels that EasyPost pushed nothing "
                    "about in the last two days: is its webhook still enabled and pointed at "
                    "/lastmile/easypost/%s/events? (Expected once, on the day the webhook is set up.) Until it is "
                    "mended, these parcels are read once a day", account.name, not_pushed, account.name)
    if error is not None:
        log.error("ALERT carrier feed %s (%s) is down: %s; its shipments in flight are in an unknown state "
                  "(%d asked about by code%s)", account.name, account.vendor, error, len(active),
                  "" if since is None else f", the others by a listing of what changed since {since.isoformat()}")
        raise FeedDown(account.name, error)
    return counts
