"""Settling the outbox by hand: ambiguous or failed messages a person confirms, resends or leaves."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from lastmile.config import Settings
from lastmile.store import schema
from lastmile.store.db import engine_for, writing

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


def reconcile(settings: Settings, mark_sent: str | None = None, resend: str | None = None) -> list[dict[str, Any]]:
    """Settle an ambiguous or failed message by hand; returns those still needing a person."""
    ob = schema.outbox
    with writing(engine_for(settings.db_url)) as conn:
        needs_person = ob.c.state.in_(["ambiguous", "failed"])
        for key, values in ((mark_sent, {"state": "sent", "state_reason": "confirmed by ops"}),
                            (resend, {"state": "planned", "state_reason": "released by ops for resending"})):
            if key and conn.execute(update(ob).where(ob.c.message_key == key, needs_person).values(**values)
                                    ).rowcount != 1:
                raise ValueError(f"{key!r} is not an ambiguous or failed message")
        return [dict(r) for r in conn.execute(select(ob.c.message_key, ob.c.state, ob.c.state_reason)
                                               .where(needs_person).order_by(ob.c.message_key)).mappings()]
