"""Which records of a read are new or changed: a digest of each raw row, against the last accepted one.

A files source hands over its whole export every run. Comparing digests keeps validation, the
writes and detection in proportion to what the shop changed; reading the export itself still
follows its size (docs/order-sources.md: export only what changed, or use the shop database).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from lastmile.shop.records import ENTITIES, KEYS, RawOrders

# (entity, record ids) -> {record id: digest as last accepted}
Stored = Callable[[str, Collection[str]], Mapping[str, str]]


def row_digest(row: Mapping[str, Any]) -> str:
    """The same raw row gives the same digest, whatever order its columns came in."""
    return hashlib.sha1(json.dumps(sorted((str(k), str(v)) for k, v in row.items())).encode()).hexdigest()


def changed_only(raw: RawOrders, stored: Stored) -> tuple[RawOrders, dict[str, dict[str, str]], int]:
    """(the read without rows accepted before unchanged, each entity's {id: digest} kept, rows dropped).

    A row whose id appears more than once in the read, or has no id, or was flagged while reading,
    always goes on to validation, which quarantines it with its reason.
    """
    kept: dict[str, list[dict[str, Any]]] = {}
    places: dict[str, list[Any]] = {}
    digests: dict[str, dict[str, str]] = {}
    dropped = 0
    for entity in ENTITIES:
        rows, origins = getattr(raw, entity), raw.places(entity)
        ids = [str(r.get(KEYS[entity]) or "").strip() for r in rows]
        seen = Counter(ids)
        single = [i for i in ids if i and seen[i] == 1]
        known = stored(entity, single) if single else {}
        digests[entity] = {}
        kept[entity], places[entity] = [], []
        for row, origin, record_id in zip(rows, origins, ids, strict=True):
            digest = row_digest(row)
            if record_id and seen[record_id] == 1 and not origin.flaws:
                if known.get(record_id) == digest:
                    dropped += 1
                    continue
                digests[entity][record_id] = digest
            kept[entity].append(row)
            places[entity].append(origin)
    return replace(raw, **kept, origins=places), digests, dropped
