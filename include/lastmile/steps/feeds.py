"""Read one carrier account: fetch its trackers and normalise them. The DAG and `track` share this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy.exc import SQLAlchemyError

from lastmile.carriers import tracking
from lastmile.carriers.accounts import TrackingAccount, payload_format
from lastmile.config import Settings
from lastmile.steps.wiring import tracking_source


@dataclass
class FeedRead:
    parsed: tracking.ParsedTrackers
    received: int  # trackers the vendor answered with
    error: str | None  # why the read stopped early; None when the feed answered fully
    listed: int = 0  # of those, how many its listing of changes (or its pushes) brought


def read_feed(settings: Settings, account: TrackingAccount, shipments: list[dict[str, Any]],
              as_of: datetime, changed_since: datetime | None = None,
              shipments_with: Callable[[list[str]], list[dict[str, Any]]] | None = None,
              settled: datetime | None = None) -> FeedRead:
    """Trackers for `shipments` from `account`, parsed into our scans; with `changed_since`, also
    every tracker the vendor updated since then that belongs to a shipment `shipments_with` finds
    for its code (tracking.ChangeListing); `settled`: when the account was last asked about every
    parcel (a pushed tracker no newer comes without its estimate: easypost_events.pushed_trackers).

    A feed that fails half-way keeps what it returned before failing: those scans are facts.
    """
    received: list[tuple[str, dict[str, Any]]] = []
    asked = 0
    error: str | None = None
    source = tracking_source(settings, account, as_of, settled)

    def ours(codes: list[str]) -> list[dict[str, Any]]:
        try:
            return shipments_with(codes) if shipments_with is not None else []
        except Exception as err:
            raise _OurSide(err) from err

    try:
        for pair in source.trackers(shipments, as_of):
            received.append(pair)
        asked = len(received)
        if changed_since is not None and shipments_with is not None:
            listing = cast(tracking.ChangeListing, source)
            for pair in listing.changed_trackers(changed_since, ours, {sid for sid, _ in received}):
                received.append(pair)
    except _OurSide as err:  # our history failed, not the feed: the task fails (and retries) as such
        raise err.__cause__ from None  # type: ignore[misc]
    except SQLAlchemyError:  # (a listing read from our history: what a carrier pushed) the same
        raise
    except Exception as err:  # noqa: BLE001 -- any failure means the same to ops: this feed is down
        error = f"{type(err).__name__}: {err}"
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return FeedRead(tracking.parse(payload_format(account.vendor), received, observed_at=as_of), len(received), error,
                    len(received) - asked if changed_since is not None else 0)


class _OurSide(Exception):
    """A lookup in our own history failed while a feed was being read."""
