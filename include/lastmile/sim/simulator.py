"""A seeded simulated shop: customers, orders, subscriptions, shipments and carrier timelines.

The carrier side is a full timeline per shipment (past and future scans, estimate changes); the
pipeline only ever sees it through `tracker_payload(..., as_of)`, which renders an EasyPost Tracker
as the API would have answered at that moment. The ground truth of every shipment and the list of
deliberately injected bad records are written beside the data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.core.calendar import TZ_COUNTRY, add_business_days

SIM_START = datetime(2026, 9, 21, tzinfo=UTC)
SIM_DAYS = 60
# Raised when the same seed makes a different shop: `ensure` then rebuilds a data set made before
# (2: Dutch customers in Europe/Amsterdam, locale nl_NL).
GENERATOR_VERSION = 2

FIRST_NAMES = [
    "Zoë", "José", "Françoise", "Jürgen", "Søren", "Ana", "Liam", "Olivia", "Noah", "Emma",
    "Chloé", "Mateo", "Siobhán", "Łukasz", "Renée", "Björn", "Aoife", "Marta", "Kwame", "Priya",
    "D'Andre", "Mary-Kate", "Hélène", "Tomás", "Ines", "Yusuf", "Grace", "Wei", "Élodie", "Jack",
]
LAST_NAMES = [
    "O'Brien", "Núñez", "Lefèvre", "Müller", "Kierkegård", "García", "Smith", "Johnson", "Dubois",
    "Rossi", "Nowak", "Ó Súilleabháin", "D'Angelo", "van der Berg", "Schäfer", "Brontë", "Nguyen",
    "Okafor", "Patel", "Kim", "Fernández", "MacDonald", "L'Écuyer", "Andersen", "Costa", "Wójcik",
]
# Names a template must escape, not render: markup in a name is data.
HOSTILE_NAMES = ["<b>Bold</b> Baker", "<script>alert(1)</script>", "Tom & Jerry's <i>Shop</i>"]

SKUS = [
    ("COF-250", "Single-origin coffee beans, 250 g"),
    ("COF-1K", "House blend coffee beans, 1 kg"),
    ("TEA-100", "Sencha green tea, 100 g"),
    ("MUG-01", "Stoneware mug, speckled"),
    ("GRN-02", "Burr grinder, hand-cranked"),
    ("FLT-50", "Paper filters, pack of 50"),
    ("KTL-01", "Gooseneck kettle, 1 l"),
]

US_TZS = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
EU_TZS = ["Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid"]
# Dutch customers (Europe/Amsterdam, nl_NL), about this share of all. They and their orders are made
# after the rest of the shop, from a random stream of their own (seeded from the seed), so every
# other record of a seed is exactly what it was before the shop had Dutch customers.
NL_TZ = "Europe/Amsterdam"
NL_SHARE = 0.08

WAREHOUSES = {
    "US": {"city": "HOUSTON", "state": "TX", "country": "US", "zip": "77063", "tz": "America/Chicago"},
    "EU": {"city": "VENLO", "state": None, "country": "NL", "zip": "5928", "tz": "Europe/Amsterdam"},
}
DEST_CITIES = {
    "America/New_York": ("BROOKLYN", "NY", "US", "11201"),
    "America/Chicago": ("CHICAGO", "IL", "US", "60601"),
    "America/Denver": ("DENVER", "CO", "US", "80202"),
    "America/Los_Angeles": ("OAKLAND", "CA", "US", "94607"),
    "Europe/London": ("LONDON", None, "GB", "E1 6AN"),
    "Europe/Berlin": ("BERLIN", None, "DE", "10115"),
    "Europe/Paris": ("PARIS", None, "FR", "75011"),
    "Europe/Madrid": ("MADRID", None, "ES", "28004"),
    "Europe/Amsterdam": ("AMSTERDAM", None, "NL", "1012"),
}
HUBS = {
    "US": [("DALLAS", "TX", "75261"), ("MEMPHIS", "TN", "38118"), ("LOUISVILLE", "KY", "40209"),
           ("PHOENIX", "AZ", "85034"), ("INDIANAPOLIS", "IN", "46241")],
    "EU": [("VENLO", None, "5928"), ("KÖLN", None, "50667"), ("LEIPZIG", None, "04435"),
           ("LIÈGE", None, "4460"), ("PARIS-CDG", None, "95700")],
}

# Services: (carrier, service, base transit business days, spread, promised business days).
SERVICES: dict[str, list[tuple[str, str, int, int, int]]] = {
    "domestic_US": [
        ("USPS", "GroundAdvantage", 3, 2, 5),
        ("USPS", "Priority", 2, 1, 3),
        ("UPS", "Ground", 3, 2, 5),
        ("FedEx", "FEDEX_HOME_DELIVERY", 3, 2, 5),
        ("FedEx", "FEDEX_2_DAY", 2, 0, 2),
    ],
    "domestic_EU": [
        ("DHL", "Paket", 2, 1, 3),
        ("DPD", "Classic", 2, 2, 4),
    ],
    "international": [
        ("DHL", "ExpressWorldwide", 4, 2, 6),
        ("USPS", "PriorityMailInternational", 7, 3, 10),
    ],
}
# Extra business days by destination: the lane, not only the service, sets transit time.
ZONE_EXTRA = {
    "America/New_York": 1, "America/Chicago": 0, "America/Denver": 1, "America/Los_Angeles": 2,
    "Europe/London": 1, "Europe/Berlin": 0, "Europe/Paris": 0, "Europe/Madrid": 1, "Europe/Amsterdam": 0,
}

# Share of original shipments per failure mode; the rest arrive on time.
MODE_RATES = {
    "delayed": 0.060,
    "stalled": 0.025,
    "lost": 0.015,
    "failed_attempt": 0.020,
    "returned": 0.010,
    "damaged": 0.007,
    "address_problem": 0.010,
    "customs_hold": 0.012,
    "stuck_pre_pickup": 0.010,
}
MODES = ("on_time", *MODE_RATES)


@dataclass
class Scan:
    at: datetime  # aware, UTC
    status: str
    status_detail: str
    message: str
    city: str | None
    state: str | None
    country: str | None
    zip: str | None
    offset_minutes: int = 0  # the scan location's UTC offset, rendered into the datetime


@dataclass
class Timeline:
    shipment_id: str
    scans: list[Scan] = field(default_factory=list)
    estimates: list[tuple[datetime, date]] = field(default_factory=list)  # (observed_at, est date)


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    n_orders: int = 3000
    start: datetime = SIM_START
    days: int = SIM_DAYS


@dataclass
class Shop:
    config: SimConfig
    customers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_lines: list[dict[str, Any]]
    shipments: list[dict[str, Any]]
    timelines: dict[str, Timeline]
    ground_truth: list[dict[str, Any]]
    faults: dict[str, list[str]]


def _short_hash(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:10]


def _local_dt(day: date, hour: float, tz: str) -> datetime:
    """A UTC instant for a local wall-clock hour on `day` in `tz`."""
    minutes = int(hour * 60)
    local = datetime.combine(day, time(minutes // 60 % 24, minutes % 60), ZoneInfo(tz))
    return local.astimezone(UTC)


class _Generator:
    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.nl_rng = random.Random(f"{config.seed}/nl")  # the Dutch customers' own stream
        self.customers: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.shipments: list[dict[str, Any]] = []
        self.timelines: dict[str, Timeline] = {}
        self.truth: list[dict[str, Any]] = []
        self.faults: dict[str, list[str]] = {}

    # -- people and orders ------------------------------------------------------------------
    def make_customers(self, n: int) -> None:
        rng = self.rng
        for i in range(n):
            tz = rng.choice(US_TZS) if rng.random() < 0.6 else rng.choice(EU_TZS)
            self.add_customer(i, tz)
        # Known bad contact data: the pipeline must quarantine these and still track the parcels.
        missing, invalid = self.customers[5], self.customers[11]
        missing["email"] = ""
        invalid["email"] = "maria.garcia@@example"
        self.customers[23]["email"] = "no-at-sign.example.com"
        self.faults["customer_email_missing"] = [missing["customer_id"]]
        self.faults["customer_email_invalid"] = [invalid["customer_id"], self.customers[23]["customer_id"]]

    def add_customer(self, i: int, tz: str) -> dict[str, Any]:
        rng = self.rng
        if i % 97 == 13:
            name = HOSTILE_NAMES[(i // 97) % len(HOSTILE_NAMES)]
        else:
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        slug = "".join(c for c in name.lower() if c.isascii() and c.isalnum()) or "customer"
        email = f"{slug}.{i}@example.{'com' if tz in US_TZS else 'org'}"
        customer = {"customer_id": f"C{i:05d}", "name": name, "email": email, "tz": tz,
                    "country": TZ_COUNTRY[tz], "locale": _locale_for(tz)}
        self.customers.append(customer)
        return customer

    def make_dutch_customers(self) -> None:
        """Dutch customers and their one-off orders, after everything else and from their own stream."""
        main, self.rng = self.rng, self.nl_rng
        try:
            rng, cfg = self.rng, self.cfg
            first = len(self.customers)
            dutch = [self.add_customer(i, NL_TZ) for i in range(first, first + max(10, round(first * NL_SHARE)))]
            next_no = 100000 + len({o["order_id"] for o in self.orders})
            n_orders = max(10, round(cfg.n_orders * NL_SHARE))
            placements = sorted(cfg.start + timedelta(seconds=rng.uniform(0, cfg.days * 86400)) for _ in range(n_orders))
            for n, placed_at in enumerate(placements):
                cust, order_id = rng.choice(dutch), f"O{next_no + n}"
                self.orders.append({"order_id": order_id, "customer_id": cust["customer_id"],
                                    "placed_at": placed_at.isoformat(), "subscription_id": "", "currency": "EUR"})
                for j, (sku, desc) in enumerate(rng.sample(SKUS, 1 if rng.random() < 0.85 else 2), start=1):
                    line_id = f"{order_id}-{j}"
                    self.lines.append({"order_line_id": line_id, "order_id": order_id, "sku": sku,
                                       "description": desc, "quantity": rng.choice([1, 1, 1, 2, 3])})
                    self.ship_line(line_id, order_id, cust, placed_at)
        finally:
            self.rng = main

    def make_orders(self) -> None:
        rng, cfg = self.rng, self.cfg
        end = cfg.start + timedelta(days=cfg.days)
        n_subscribers = len(self.customers) // 7
        subscribers = rng.sample(self.customers, n_subscribers)
        placements: list[tuple[datetime, dict[str, Any], str | None]] = []
        for k, cust in enumerate(subscribers):
            cadence = "weekly" if k % 3 == 0 else "monthly"
            step = timedelta(days=7 if cadence == "weekly" else 30)
            sub_id = f"S{k:04d}"
            first = cfg.start + timedelta(hours=rng.uniform(0, 24 * (7 if cadence == "weekly" else 30)))
            t = first
            while t < end:
                placements.append((t, cust, sub_id))
                t += step
            self.subscriptions.append({
                "subscription_id": sub_id, "customer_id": cust["customer_id"], "cadence": cadence,
                "sku": rng.choice(SKUS[:3])[0], "started_at": first.isoformat(),
                "next_delivery_date": (t.date()).isoformat(), "status": "active",
            })
        while len(placements) < cfg.n_orders:
            t = cfg.start + timedelta(seconds=rng.uniform(0, cfg.days * 86400))
            placements.append((t, rng.choice(self.customers), None))
        placements.sort(key=lambda p: p[0])
        sub_skus = {s["subscription_id"]: s["sku"] for s in self.subscriptions}
        for n, (placed_at, cust, sub_id) in enumerate(placements[: max(cfg.n_orders, len(placements))]):
            order_id = f"O{100000 + n}"
            self.orders.append({
                "order_id": order_id, "customer_id": cust["customer_id"], "placed_at": placed_at.isoformat(),
                "subscription_id": sub_id or "", "currency": "USD" if cust["country"] == "US" else "EUR",
            })
            skus = [next(s for s in SKUS if s[0] == sub_skus[sub_id])] if sub_id else rng.sample(
                SKUS, 1 if rng.random() < 0.85 else 2)
            for j, (sku, desc) in enumerate(skus, start=1):
                line_id = f"{order_id}-{j}"
                self.lines.append({"order_line_id": line_id, "order_id": order_id, "sku": sku,
                                   "description": desc, "quantity": rng.choice([1, 1, 1, 2, 3])})
                self.ship_line(line_id, order_id, cust, placed_at)
        # A duplicated order id with different content: the loader keeps the first and quarantines it.
        dup = dict(self.orders[40])
        dup["currency"] = "GBP"
        self.orders.append(dup)
        self.faults["duplicate_order_id"] = [dup["order_id"]]

    # -- shipments and their carrier timelines -----------------------------------------------
    def ship_line(self, line_id: str, order_id: str, cust: dict[str, Any], placed_at: datetime) -> None:
        rng = self.rng
        tz = cust["tz"]
        region = "US" if tz in US_TZS else "EU"
        international = rng.random() < (0.10 if region == "EU" else 0.03)
        origin = ("EU" if region == "US" else "US") if international else region
        lane_kind = "international" if international else f"domestic_{region}"
        carrier, service, base, spread, promised_bd = rng.choice(SERVICES[lane_kind])
        mode = self.pick_mode(international)
        if self._force_chain_needed(mode, placed_at):
            mode = "lost"
            self._chain_line = line_id
        self.add_shipment(line_id, order_id, cust, origin, carrier, service, base, spread, promised_bd,
                          placed_at + timedelta(hours=rng.uniform(2, 30)), 1, None, mode)

    def _force_chain_needed(self, mode: str, placed_at: datetime) -> bool:
        # Guarantee one order line reshipped a third time, early enough to finish before the end.
        day = (placed_at - self.cfg.start).days
        return not getattr(self, "_chain_line", None) and 10 <= day <= 14 and mode == "on_time"

    def pick_mode(self, international: bool) -> str:
        r = self.rng.random()
        for mode, rate in MODE_RATES.items():
            if mode == "customs_hold":
                if not international:
                    continue
                rate = 0.12  # a cross-border parcel meets customs far more often than the average
            if r < rate:
                return mode
            r -= rate
        return "on_time"

    def add_shipment(
        self, line_id: str, order_id: str, cust: dict[str, Any], origin: str, carrier: str,
        service: str, base: int, spread: int, promised_bd: int, label_at: datetime, sequence: int,
        replaces: str | None, mode: str,
    ) -> None:
        rng = self.rng
        tz = cust["tz"]
        country = TZ_COUNTRY[tz]
        shipment_id = f"SH{len(self.shipments) + 1:06d}"
        code = f"{carrier[:2].upper()}{_short_hash(self.cfg.seed, shipment_id).upper()}"
        label_day = label_at.astimezone(ZoneInfo(tz)).date()
        promised = add_business_days(label_day, promised_bd + ZONE_EXTRA[tz], country)
        transit = max(1, base + ZONE_EXTRA[tz] + rng.randint(0, spread))
        wh = WAREHOUSES[origin]
        self.shipments.append({
            "shipment_id": shipment_id, "order_line_id": line_id, "order_id": order_id,
            "customer_id": cust["customer_id"], "carrier": carrier, "service": service,
            "tracking_code": code, "created_at": label_at.isoformat(), "promised_date": promised.isoformat(),
            "origin": f"{wh['country']}-{wh['city']}", "destination": f"{country}-{DEST_CITIES[tz][0]}",
            "dest_tz": tz, "sequence": sequence, "replaces_shipment_id": replaces or "",
        })
        tl = Timeline(shipment_id)
        self.timelines[shipment_id] = tl
        truth = {"shipment_id": shipment_id, "order_line_id": line_id, "mode": mode, "sequence": sequence,
                 "evidence_at": "", "delivered_at": "", "promised_date": promised.isoformat(),
                 "reshipped_by": "", "types": ""}
        self.truth.append(truth)
        outcome = _Route(self, tl, cust, origin, carrier, label_at, transit, promised, mode).run()
        truth["evidence_at"] = outcome.evidence_at.isoformat() if outcome.evidence_at else ""
        truth["types"] = ";".join(sorted(_true_types(mode, sequence, outcome, promised, tz)))
        truth["delivered_at"] = outcome.delivered_at.isoformat() if outcome.delivered_at else ""
        if outcome.reship_at is not None:
            next_mode = "on_time"
            if line_id == getattr(self, "_chain_line", None) and sequence < 3:
                next_mode = "damaged" if sequence == 1 else "on_time"
            truth["reshipped_by"] = f"SH{len(self.shipments) + 1:06d}"
            self.add_shipment(line_id, order_id, cust, origin, carrier, service, base, spread, promised_bd,
                              outcome.reship_at, sequence + 1, shipment_id, next_mode)

    # -- injected bad tracker data ------------------------------------------------------------
    def mark_tracker_faults(self) -> None:
        delivered = [s["shipment_id"] for s in self.shipments if s["sequence"] == 1]
        self.faults["tracker_missing_fields"] = delivered[300:302]
        self.faults["scan_naive_timestamp"] = delivered[400:403]


# The exception each failure mode is, in the pipeline's vocabulary (what detection should find).
MODE_TYPES = {
    "delayed": "late", "stalled": "stalled", "lost": "lost", "failed_attempt": "failed_attempt",
    "returned": "returned", "damaged": "damaged", "address_problem": "address_problem",
    "customs_hold": "customs_hold", "stuck_pre_pickup": "stuck_before_pickup",
}


def _true_types(mode: str, sequence: int, outcome: _Outcome, promised: date, tz: str) -> set[str]:
    """Every exception that really happened to a shipment, for scoring multi-label detection."""
    types = {MODE_TYPES[mode]} if mode in MODE_TYPES else set()
    if outcome.returned:
        types.add("returned")
    if sequence >= 2:
        types.add("reshipped")
    delivered_local = outcome.delivered_at.astimezone(ZoneInfo(tz)).date() if outcome.delivered_at else None
    if delivered_local is None or delivered_local > promised:
        types.add("late")
    return types


class _Outcome:
    def __init__(self) -> None:
        self.evidence_at: datetime | None = None
        self.delivered_at: datetime | None = None
        self.reship_at: datetime | None = None
        self.returned = False


class _Route:
    """Writes one shipment's carrier timeline for its failure mode."""

    def __init__(self, gen: _Generator, tl: Timeline, cust: dict[str, Any], origin: str, carrier: str,
                 label_at: datetime, transit: int, promised: date, mode: str) -> None:
        self.gen, self.rng, self.tl = gen, gen.rng, tl
        self.tz = cust["tz"]
        self.country = TZ_COUNTRY[self.tz]
        self.origin = origin
        self.carrier = carrier
        self.label_at = label_at
        self.transit = transit
        self.promised = promised
        self.mode = mode
        self.out = _Outcome()
        self.eu_local = carrier in ("DHL", "DPD")

    def scan(self, at: datetime, status: str, detail: str, message: str, where: str = "hub") -> None:
        if where == "origin":
            wh = WAREHOUSES[self.origin]
            city, state, country, zip_ = wh["city"], wh["state"], wh["country"], wh["zip"]
        elif where == "dest":
            city, state, country, zip_ = DEST_CITIES[self.tz]
        else:
            hub_region = self.origin if self.rng.random() < 0.5 else ("US" if self.country == "US" else "EU")
            city, state, zip_ = self.rng.choice(HUBS[hub_region])
            country = "US" if hub_region == "US" else "DE"
        offset = 0
        if self.eu_local:
            zone = ZoneInfo(self.tz if where == "dest" else "Europe/Berlin")
            offset = int(at.astimezone(zone).utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
        self.tl.scans.append(Scan(at, status, detail, message, city, state, country, zip_, offset))

    def estimate(self, at: datetime, day: date) -> None:
        self.tl.estimates.append((at, day))

    def day_at(self, day: date, lo: float, hi: float) -> datetime:
        return _local_dt(day, self.rng.uniform(lo, hi), self.tz)

    def run(self) -> _Outcome:
        rng, mode = self.rng, self.mode
        label_day = self.label_at.astimezone(ZoneInfo(self.tz)).date()
        self.scan(self.label_at, "pre_transit", "label_created", "Shipping label created", "origin")
        on_time_day = add_business_days(label_day, self.transit, self.country)
        self.estimate(self.label_at, on_time_day)
        if mode == "stuck_pre_pickup":
            self.out.evidence_at = self.label_at
            if rng.random() < 0.5:  # never handed over: the shop cancels the label and reships
                self.out.reship_at = self.label_at + timedelta(days=rng.uniform(5, 7))
                return self.out
            label_day = add_business_days(label_day, rng.randint(3, 5), self.country)
            on_time_day = add_business_days(label_day, self.transit, self.country)
        accept_at = max(self.label_at + timedelta(hours=3), self.day_at(label_day, 17, 20))
        if mode == "stuck_pre_pickup":
            accept_at = self.day_at(label_day, 15, 19)
            self.estimate(accept_at, on_time_day)
        self.scan(accept_at, "in_transit", "arrived_at_facility", "Accepted at origin facility", "origin")
        deliver_day = on_time_day
        if mode in ("delayed", "stalled"):
            deliver_day = add_business_days(on_time_day, rng.randint(2, 5), self.country)
        if mode == "stalled":  # the silence pushes everything after it, including the delivery
            stall = timedelta(days=rng.uniform(5, 8))
            deliver_day = max(deliver_day, add_business_days(
                (accept_at + stall).astimezone(ZoneInfo(self.tz)).date(), 2, self.country))
        hops = max(1, (deliver_day - label_day).days)
        t, delay = accept_at, timedelta(0)
        for h in range(1, hops):
            t = accept_at + delay + timedelta(days=h, hours=rng.uniform(-4, 4))
            if t.astimezone(ZoneInfo(self.tz)).date() >= deliver_day:
                break
            if mode == "stalled" and h == 1:
                self.out.evidence_at = t
                self.scan(t, "in_transit", "departed_facility", "Departed facility")
                delay = stall
                t = t + stall
                self.scan(t, "in_transit", "arrived_at_facility", "Arrived at facility")
                self.estimate(t, deliver_day)
                continue
            if mode == "lost" and h == 1:
                self.scan(t, "in_transit", "departed_facility", "Departed facility")
                self.out.evidence_at = t
                if rng.random() < 0.5:  # the carrier confirms it after its own search
                    self.scan(t + timedelta(days=rng.uniform(8, 12)), "failure", "lost",
                              "Package could not be located. Claim initiated.")
                self.out.reship_at = t + timedelta(days=rng.uniform(6, 9))
                return self.out
            if mode == "delayed" and h == 1:
                self.out.evidence_at = t
                self.scan(t, "in_transit", "delayed", "Delayed in transit - operational delay")
                self.estimate(t, deliver_day)
                continue
            self.scan(t, "in_transit", "arrived_at_facility" if h % 2 else "departed_facility",
                      "Arrived at facility" if h % 2 else "Departed facility")
        if self.mode == "customs_hold":
            released = self.customs_hold(t)
            if released is None:
                return self.out
            t = released
            release_day = released.astimezone(ZoneInfo(self.tz)).date()
            deliver_day = max(deliver_day, add_business_days(release_day, rng.randint(1, 2), self.country))
            self.estimate(released, deliver_day)
        ofd = self.day_at(deliver_day, 7, 9)
        if ofd <= t:
            ofd = t + timedelta(hours=2)
        self.scan(ofd, "out_for_delivery", "out_for_delivery", "Out for delivery", "dest")
        done = ofd + timedelta(hours=rng.uniform(1, 8))
        if mode == "failed_attempt":
            self.out.evidence_at = done
            self.scan(done, "in_transit", "failed_attempt", "Delivery attempted - no access to location", "dest")
            retry_day = add_business_days(done.astimezone(ZoneInfo(self.tz)).date(), 1, self.country)
            self.estimate(done, retry_day)
            done = self.day_at(retry_day, 10, 17)
        elif mode == "address_problem":
            self.out.evidence_at = done
            self.scan(done, "in_transit", "address_correction", "Address information incomplete", "dest")
            fix_day = add_business_days(done.astimezone(ZoneInfo(self.tz)).date(), 3, self.country)
            if rng.random() < 0.3:
                return self.return_to_sender(done)
            done = self.day_at(fix_day, 10, 17)
        elif mode == "returned":
            self.out.evidence_at = done
            self.scan(done, "in_transit", "refused", "Delivery refused by recipient", "dest")
            return self.return_to_sender(done)
        elif mode == "damaged":
            self.out.evidence_at = done - timedelta(hours=6)
            self.scan(done - timedelta(hours=6), "failure", "damaged", "Package damaged in handling", "dest")
            self.out.reship_at = done + timedelta(days=1)
            return self.out
        self.scan(done, "delivered", "arrived_at_destination", "Delivered, front door", "dest")
        self.out.delivered_at = done
        if mode in ("on_time", "stuck_pre_pickup") and done.astimezone(ZoneInfo(self.tz)).date() > self.promised:
            # Even a "normal" parcel can miss the promise; say so in the truth rather than hide it.
            self.out.evidence_at = self.out.evidence_at or done
        return self.out

    def customs_hold(self, t: datetime) -> datetime | None:
        """A customs hold that releases (the release time) or ends in a return (None)."""
        held = t + timedelta(hours=6)
        self.out.evidence_at = held
        self.scan(held, "in_transit", "held", "Held by customs - awaiting clearance")
        if self.rng.random() < 0.15:
            self.return_to_sender(held + timedelta(days=10))
            return None
        release = held + timedelta(days=self.rng.uniform(3, 6))
        self.scan(release, "in_transit", "departed_facility", "Released by customs")
        return release

    def return_to_sender(self, at: datetime) -> _Outcome:
        self.out.returned = True
        self.scan(at + timedelta(days=1), "return_to_sender", "return", "Returning to sender")
        self.out.reship_at = at + timedelta(days=self.rng.uniform(4, 6))
        return self.out


def _locale_for(tz: str) -> str:
    return {"Europe/London": "en_GB", "Europe/Berlin": "de_DE", "Europe/Paris": "fr_FR",
            "Europe/Madrid": "es_ES", NL_TZ: "nl_NL"}.get(tz, "en_US")


def generate(config: SimConfig | None = None) -> Shop:
    """Build the whole simulated shop for a seed; the same seed gives the same shop."""
    gen = _Generator(config or SimConfig())
    gen.make_customers(max(200, gen.cfg.n_orders * 3 // 5))
    gen.make_orders()
    gen.mark_tracker_faults()
    gen.make_dutch_customers()
    return Shop(gen.cfg, gen.customers, gen.subscriptions, gen.orders, gen.lines, gen.shipments,
                gen.timelines, gen.truth, gen.faults)


# -- EasyPost-shaped rendering -------------------------------------------------------------------

def _iso(at: datetime, offset_minutes: int = 0) -> str:
    if offset_minutes == 0:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return at.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat(timespec="seconds")


def tracker_payload(shipment: dict[str, Any], timeline: Timeline, as_of: datetime,
                    faults: dict[str, list[str]] | None = None) -> dict[str, Any] | None:
    """The EasyPost Tracker object for a shipment as the API would answer at `as_of` (None if unknown)."""
    visible = [s for s in timeline.scans if s.at <= as_of]
    if not visible:
        return None
    faults = faults or {}
    sid = shipment["shipment_id"]
    naive = sid in faults.get("scan_naive_timestamp", [])
    details = []
    for i, s in enumerate(visible):
        stamp = _iso(s.at, s.offset_minutes)
        if naive and i == 1 and len(visible) > 2:
            stamp = s.at.strftime("%Y-%m-%dT%H:%M:%S")  # a carrier feed that dropped its offset
        details.append({
            "object": "TrackingDetail", "message": s.message, "description": s.message,
            "status": s.status, "status_detail": s.status_detail, "datetime": stamp,
            "source": shipment["carrier"], "carrier_code": "",
            "tracking_location": {"object": "TrackingLocation", "city": s.city, "state": s.state,
                                  "country": s.country, "zip": s.zip},
        })
    estimates = [e for e in timeline.estimates if e[0] <= as_of]
    est = estimates[-1][1] if estimates else None
    last = visible[-1]
    tracker_id = f"trk_{_short_hash('trk', sid)}{_short_hash('x', sid)}"
    payload: dict[str, Any] = {
        "id": tracker_id, "object": "Tracker", "mode": "test", "tracking_code": shipment["tracking_code"],
        "status": last.status, "status_detail": last.status_detail,
        "created_at": _iso(visible[0].at), "updated_at": _iso(last.at), "signed_by": None, "weight": None,
        "est_delivery_date": f"{est.isoformat()}T00:00:00Z" if est else None,
        "shipment_id": None, "carrier": shipment["carrier"], "tracking_details": details, "fees": [],
        "carrier_detail": {
            "object": "CarrierDetail", "service": shipment["service"], "container_type": None,
            "est_delivery_date_local": est.isoformat() if est else None, "est_delivery_time_local": None,
            "origin_location": shipment["origin"], "destination_location": shipment["destination"],
            "origin_tracking_location": details[0]["tracking_location"],
            "destination_tracking_location": details[-1]["tracking_location"] if last.status == "delivered" else None,
            "guaranteed_delivery_date": None, "alternate_identifier": None,
            "initial_delivery_attempt": None,
        },
        "finalized": True, "is_return": False,
        "public_url": f"https://track.easypost.com/{tracker_id}",
    }
    if sid in faults.get("tracker_missing_fields", []):
        del payload["status"]
        del payload["tracking_details"]
    return payload


# -- on disk -------------------------------------------------------------------------------------

TABLES = ("customers", "subscriptions", "orders", "order_lines", "shipments", "ground_truth")


def write(shop: Shop, folder: Path) -> None:
    """Write the shop as CSV tables, carrier timelines as JSON lines, faults and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {"customers": shop.customers, "subscriptions": shop.subscriptions, "orders": shop.orders,
            "order_lines": shop.order_lines, "shipments": shop.shipments, "ground_truth": shop.ground_truth}
    for name, records in rows.items():
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0].keys()))
            writer.writeheader()
            writer.writerows(records)
    with open(folder / "carrier_timelines.jsonl", "w", encoding="utf-8") as fh:
        for tl in shop.timelines.values():
            fh.write(json.dumps({
                "shipment_id": tl.shipment_id,
                "scans": [{**asdict(s), "at": s.at.isoformat()} for s in tl.scans],
                "estimates": [[o.isoformat(), d.isoformat()] for o, d in tl.estimates],
            }) + "\n")
    (folder / "faults.json").write_text(json.dumps(shop.faults, indent=2))
    (folder / "manifest.json").write_text(json.dumps({
        "seed": shop.config.seed, "n_orders": shop.config.n_orders, "start": shop.config.start.isoformat(),
        "days": shop.config.days, "shipments": len(shop.shipments), "generator": GENERATOR_VERSION,
    }, indent=2))


def read_timelines(folder: Path) -> dict[str, Timeline]:
    """Load the carrier side written by `write`."""
    timelines: dict[str, Timeline] = {}
    with open(folder / "carrier_timelines.jsonl", encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line)
            scans = [Scan(**{**s, "at": datetime.fromisoformat(s["at"])}) for s in raw["scans"]]
            estimates = [(datetime.fromisoformat(o), date.fromisoformat(d)) for o, d in raw["estimates"]]
            timelines[raw["shipment_id"]] = Timeline(raw["shipment_id"], scans, estimates)
    return timelines


def read_table(folder: Path, name: str) -> list[dict[str, str]]:
    with open(folder / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def ensure(folder: Path, seed: int, n_orders: int = SimConfig.n_orders) -> bool:
    """Generate the data set into `folder` unless one for this seed and size is there; True if generated."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        made = json.loads(manifest.read_text())
        if (made.get("seed"), made.get("n_orders"), made.get("generator", 1)) == (seed, n_orders, GENERATOR_VERSION):
            return False
    write(generate(SimConfig(seed=seed, n_orders=n_orders)), folder)
    return True


def read_faults(folder: Path) -> dict[str, list[str]]:
    return json.loads((folder / "faults.json").read_text())
