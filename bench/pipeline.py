"""The real step chain, hour by hour, over histories of a given size: does the hourly cost follow change?

    python -m bench.pipeline --shipments 10000 100000 [--databases sqlite postgres] [--feeds poll changes pushed]

For each size a seeded shop is generated (bench.detect's vectorised generator: about a tenth of the
shipments in flight), written into a fresh history database as months of hourly runs would have
left it, and brought up to date by one full run at AS_OF; a year of hourly runs before it is then
written into the run log (run_steps, feed_health), as long operation leaves it. Then, each in its
own fresh process (so peak RSS is its own), the production steps run -- load_orders, fetch_tracking, detect_exceptions,
compute_windows, record_history, plan_messages, send_messages, summarise -- for:

  quiet hour     AS_OF + 1 h: 1% of the in-flight shipments got a new scan
  busy hour      AS_OF + 2 h: 10% of them did
  fixed hour     AS_OF + 3 h: exactly 100 of them did, at every size (the history grows, the change not)
  midnight hour  AS_OF + 9 h (23:00Z, local midnight in Berlin, Paris, Madrid, Amsterdam): 1% new
                 scans, and every in-flight parcel to those zones crosses into a new business day

The sizes' hours run in turns: every size's history is made first, then each hour runs at every
size before the next hour runs (`interleaved`), so that a ratio of two sizes compares runs made
seconds apart, not a machine that drifted between them. The quiet and the fixed hour run three
times each (quiet at +1, +4, +6 h; fixed at +3, +5, +7 h: no zone crosses a midnight then) and
count by their median: on this kind of machine one run of the same hour differs from the next by
up to twofold (page cache paged out between processes).

The carrier feed is a stand-in that hands fetch_tracking exactly the hour's new scans (no HTTP);
the shop database answers with no new orders. It is read one of three ways (--feeds, each its own
run): `poll`, asked about every parcel in flight every hour (EasyPost without a webhook, the
simulator); `changes`, asked what changed since the previous fetch (AfterShip's updated_at_min),
the day's first fetch asking about every parcel (steps/fetch_tracking.changes_since; a listing
repeats the previous hour's scans within its overlap, which the stand-in does too); or `pushed`,
EasyPost with a webhook: the hour's scans are in `tracker_events` as the webhook endpoint stores
them, one Tracker per scan, and fetch_tracking reads and parses them for real
(carriers/easypost_events.py), asked what changed like `changes`. In the same run the DuckDB reference of the
detection rules (bench.detect) runs over the same shipments and scans. Printed per size and
database: seconds per step, the process's peak RSS; then the ratios the issue asks for:

    quiet hour / DuckDB = <ratio>                    (largest size)
    quiet hour growth for 10x history = <ratio>      (quiet hour at the largest / at 1/10 of it)
    quiet hour growth for 10x history at equal change (100 new scans) = <ratio>   (the fixed hour's)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Generator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import detect as synth

# The hour's share of the in-flight shipments with a new scan; an int: exactly that many, at every size.
HOURS: dict[str, float | int] = {"quiet": 0.01, "busy": 0.10, "fixed": 100, "midnight": 0.01}
# (hours after AS_OF, which hour): the runs in order; an hour run more than once counts by its median.
RUNS = ((1, "quiet"), (2, "busy"), (3, "fixed"), (4, "quiet"), (5, "fixed"), (6, "quiet"), (7, "fixed"),
        (9, "midnight"))
STEPS = ("load_orders", "fetch_tracking", "detect_exceptions", "compute_windows", "record_history",
         "plan_messages", "send_messages", "summarise")
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]


def _scan_rows(scans: pd.DataFrame, seen_at: Any) -> list[dict[str, Any]]:
    """Scans as fetch_tracking stores them."""
    out = []
    for sid, at, status, reason, message in zip(scans["shipment_id"], scans["occurred_at"], scans["status"],
                                                 scans["reason"], scans["message"], strict=True):
        at = at.to_pydatetime()
        reason = None if pd.isna(reason) else reason
        key = hashlib.sha1(f"{sid}|{at.isoformat()}|{status}|{reason}|{message}".encode()).hexdigest()
        out.append({"scan_id": key, "shipment_id": sid, "occurred_at": at, "utc_offset_minutes": 0,
                    "status": status, "reason": reason, "carrier_status": status,
                    "carrier_status_detail": reason or "", "message": message, "city": None, "country": None,
                    "raw": "{}", "first_seen_at": seen_at or at})
    return out


def seed(frames: synth.Frames, url: str) -> None:
    """The history as hourly runs would have left it: shop records and every scan and estimate so far."""
    from lastmile.store import progress, schema
    from lastmile.store.db import prepare

    s = frames.shipments
    engine = prepare(url)
    customers = pd.DataFrame({"customer_id": s["customer_id"].unique()})
    customers = customers.assign(name="Bench Customer", email=[f"{c.lower()}@example.com" for c in customers.customer_id],
                                 tz="America/New_York", country="US", locale="en_US")
    orders = (s.groupby("order_id").agg(customer_id=("customer_id", "first"), placed_at=("created_at", "min"))
              .reset_index().assign(subscription_id=None, currency="USD", status="open"))
    lines = (s.groupby("order_line_id").agg(order_id=("order_id", "first")).reset_index()
             .assign(sku="SKU-1", description="A kettle", quantity=1))
    ships = s.drop(columns=["feed_unknown"]).assign(tracking_account=None)
    tables = [(schema.customers, customers), (schema.orders, orders), (schema.order_lines, lines),
              (schema.shipments, ships), (schema.estimates, frames.estimates)]
    with engine.begin() as conn:
        for table, frame in tables:
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            for r in records:
                for k, v in r.items():
                    if isinstance(v, pd.Timestamp):
                        r[k] = v.to_pydatetime()
            for start in range(0, len(records), 20000):
                conn.execute(table.insert(), records[start:start + 20000])
        rows = _scan_rows(frames.scans, None)
        for start in range(0, len(rows), 20000):
            conn.execute(schema.scans.insert(), rows[start:start + 20000])
        progress.rebuild(conn)


# The hourly runs a history has logged before AS_OF: a year's (the log grows with the hours run,
# not with the shipments: the same at every size).
RUN_LOG_HOURS = 24 * 365


def run_log(url: str, as_of: Any, hours: int) -> None:
    """What `hours` earlier hourly runs left in the run log: each step's counts and each feed's
    health, as the run at `as_of` wrote them, once an hour before it (a step that reads the log by
    scanning it would cost the hours run, not the change)."""
    from sqlalchemy import select

    from lastmile.store import schema
    from lastmile.store.db import batch_key_for, engine_for

    engine = engine_for(url)
    with engine.begin() as conn:
        for table in (schema.run_steps, schema.feed_health):
            rows = [dict(r) for r in conn.execute(select(table).where(
                table.c.batch_key == batch_key_for(as_of))).mappings()]
            earlier = [{**r, "batch_key": batch_key_for(at), "as_of": at}
                       for h in range(1, hours + 1) for at in [as_of - timedelta(hours=h)] for r in rows]
            for start in range(0, len(earlier), 20000):
                conn.execute(table.insert(), earlier[start:start + 20000])


def hour_scans(frames: synth.Frames, at: Any, previous: Any, share: float | int, seed_no: int) -> pd.DataFrame:
    """One new scan, between the previous run and this one, for `share` of the in-flight shipments
    (an int: for that many)."""
    rng = np.random.default_rng(seed_no)
    ended = frames.scans.loc[frames.scans["status"].isin(["delivered", "returned", "failed", "cancelled"]),
                             "shipment_id"]
    ids = frames.shipments["shipment_id"]
    in_flight = ids[~ids.isin(ended)].to_numpy()
    size = min(share, len(in_flight)) if isinstance(share, int) else max(1, round(len(in_flight) * share))
    chosen = np.sort(rng.choice(in_flight, size=size, replace=False))
    kinds = rng.choice([synth.K["arrived"], synth.K["departed"], synth.K["out_for_delivery"], synth.K["delivered"]],
                       size=len(chosen), p=[0.4, 0.3, 0.15, 0.15])
    span = (pd.Timestamp(at) - pd.Timestamp(previous)).total_seconds()
    return pd.DataFrame({
        "shipment_id": chosen,
        "occurred_at": pd.Timestamp(previous) + pd.to_timedelta(rng.uniform(1, span - 1, len(chosen)), unit="s"),
        "status": [synth.SCAN_KINDS[k][0] for k in kinds], "reason": [synth.SCAN_KINDS[k][1] for k in kinds],
        "message": [synth.SCAN_KINDS[k][2] for k in kinds]})


# The carrier account each feed is read through: its vendor decides how an hour asks it
# (steps/fetch_tracking.changes_since). The stand-ins below answer for each.
FEEDS = {"changes": "aftership_bench", "poll": "easypost_bench", "pushed": "easypost_pushed"}
WEBHOOK_SECRET = "bench"  # the pushed feed's account has one: it is read from what it pushed


def _account(feed: str) -> Any:
    from lastmile.carriers.accounts import TrackingAccount, vendor_of

    name = FEEDS[feed]
    return TrackingAccount(name, vendor_of(name), api_key="bench",
                           webhook_secret=WEBHOOK_SECRET if feed == "pushed" else "")


def pushed_rows(scans: pd.DataFrame, shipments: pd.DataFrame, account: str, until: Any) -> list[dict[str, Any]]:
    """`tracker_events` as the ops plugin's webhook endpoint stores them while an hour passes: one
    EasyPost Tracker per new scan, received 30 s after it, by `until` (the hour's run). (A real push carries the tracker's whole
    scan history; these carry the new scan alone, since the seeded scans are keyed otherwise than
    the EasyPost parser keys them and would be stored a second time.)"""
    ships = shipments.set_index("shipment_id")
    rows = []
    for n, (sid, at, status, reason, message) in enumerate(zip(
            scans["shipment_id"], scans["occurred_at"], scans["status"], scans["reason"], scans["message"],
            strict=True)):
        at = pd.Timestamp(at).floor("s").to_pydatetime()
        code, carrier = ships.at[sid, "tracking_code"], ships.at[sid, "carrier"]
        detail = "" if pd.isna(reason) else str(reason)
        tracker = {"id": f"trk_{sid}", "object": "Tracker", "tracking_code": code, "carrier": carrier,
                   "status": status, "status_detail": detail, "updated_at": at.isoformat(),
                   "tracking_details": [{"object": "TrackingDetail", "message": message, "status": status,
                                         "status_detail": detail, "datetime": at.isoformat(),
                                         "tracking_location": {"object": "TrackingLocation", "city": None,
                                                               "country": None}}]}
        rows.append({"account": account, "event_id": f"evt_{sid}_{at.timestamp():.0f}_{n}",
                     "tracker_id": tracker["id"], "tracking_code": code,
                     "received_at": min(at + timedelta(seconds=30), until), "tracker_updated_at": at,
                     "event_created_at": at,
                     "tracker": json.dumps(tracker)})
    return rows


def _settings(url: str, out: Path, shop_url: str, feed: str = "changes") -> Any:
    from lastmile.config import Settings

    return Settings(db_url=url, source="sql", email_transport="file", out_dir=out, sim_dir=out / "sim",
                    sim_seed=7, orders_db_url=shop_url, tracking_accounts=(FEEDS[feed],))


def run_hour(url: str, out: Path, shop_url: str, at_iso: str, scans_path: str | None,
             feed: str = "changes") -> dict[str, Any]:
    """One hourly run of the real steps (in this process); seconds per step and peak RSS."""
    from lastmile.carriers.tracking import ParsedTrackers
    from lastmile.steps import fetch_tracking as fetch_module
    from lastmile.steps import pipeline
    from lastmile.steps.feeds import FeedRead

    at = pd.Timestamp(at_iso).to_pydatetime()
    new = pd.read_parquet(scans_path) if scans_path else None

    def stand_in(settings: Any, account: Any, shipments: list[dict[str, Any]], as_of: Any,
                 changed_since: Any = None, shipments_with: Any = None, settled: Any = None) -> FeedRead:
        # Asked about parcels by code, it answers for those; asked what changed since the previous
        # fetch, it lists the trackers with a scan since (this hour's, and the previous hour's within
        # the listing's overlap), which fetch_tracking matches to its parcels by code.
        asked = {s["shipment_id"] for s in shipments}
        if shipments_with is not None and new is not None:
            asked |= {s["shipment_id"] for s in shipments_with(sorted(set(new["tracking_code"])))}
        rows = [] if new is None else [r for r in _scan_rows(new, as_of) if r["shipment_id"] in asked]
        for r in rows:
            r.pop("first_seen_at")
        return FeedRead(ParsedTrackers(scans=rows, estimates=[], rejections=[], trackers_ok=len(rows)),
                        len(rows), None)

    if feed == "pushed":
        _push_stand_in()
    else:
        fetch_module.read_feed = stand_in
    settings = _settings(url, out, shop_url, feed)
    account = _account(feed)
    seconds: dict[str, float] = {}
    for step in STEPS:
        start = time.perf_counter()
        if step == "fetch_tracking":
            pipeline.fetch_tracking(settings, at, account)
        else:
            getattr(pipeline, step)(settings, at)
        seconds[step] = time.perf_counter() - start
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's peak.
    return {"seconds": seconds, "total": sum(seconds.values()), "peak_rss_mb": synth._rss_mb("VmHWM")}


def _push_stand_in() -> None:
    """The pushed feed: the real read of what EasyPost pushed (tracker_events, parsed as EasyPost's
    Trackers); asked by code, the stand-in knows nothing new (the hour's news came pushed)."""
    from lastmile.carriers.easypost_client import EasyPostConfig
    from lastmile.carriers.easypost_events import PushedEasyPostClient
    from lastmile.steps import feeds
    from lastmile.store.db import engine_for

    class PushedStandIn(PushedEasyPostClient):
        def trackers(self, shipments: list[dict[str, Any]], as_of: Any) -> Iterator[tuple[str, dict[str, Any]]]:
            return iter(())

    feeds.tracking_source = lambda settings, account, as_of=None, settled=None: PushedStandIn(  # type: ignore[assignment]
        EasyPostConfig(api_key="bench"), engine_for(settings.db_url), account.name, as_of, settled)


def _in_process(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    # (the child finds bench/ and the package wherever the bench was started from)
    paths = [str(ROOT), str(ROOT / "include"), *filter(None, [os.environ.get("PYTHONPATH")])]
    done = subprocess.run([sys.executable, "-m", "bench.pipeline", "--child", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shop_db(folder: Path) -> str:
    """The shop's database with its tables and no new rows: a quiet shop this hour."""
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{folder / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for table, cols in (("customers", "customer_id, name, email, tz"),
                            ("orders", "order_id, customer_id, placed_at, currency"),
                            ("order_lines", "order_line_id, order_id, sku, description, quantity"),
                            ("shipments", "shipment_id, order_line_id, order_id, customer_id, carrier, service, "
                                          "tracking_code, created_at, promised_date, origin, destination, dest_tz")):
            conn.execute(text(f"CREATE TABLE {table} ({cols}, updated_at TEXT)"))
    engine.dispose()
    return url


@contextlib.contextmanager
def _history(database: str, folder: Path) -> Iterator[tuple[str, str | None]]:
    """A fresh history database: its URL and, on Postgres, its schema (dropped when done, also when
    a run fails or the bench is stopped)."""
    from sqlalchemy import create_engine, text

    if database == "sqlite":
        yield f"sqlite:///{folder / 'history.db'}", None
        return
    schema_name = f"bench_{uuid.uuid4().hex[:8]}"
    with create_engine(POSTGRES).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema_name}", schema_name
    finally:
        with create_engine(POSTGRES).begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))


def bench(n: int, database: str, folder: Path, feed: str = "changes") -> Generator[None, None, dict[str, Any]]:
    """Seed, bring up to date, then the hours, each in a fresh process, the carrier read as `feed`.

    A generator: it pauses once the history is ready and after each hour, so that `interleaved` can
    run the hours of several sizes in turn; its result is what it returns."""
    from sqlalchemy import create_engine, text

    from lastmile.steps.fetch_tracking import LISTING_OVERLAP

    frames = synth.as_of_view(synth.generate(n), synth.AS_OF)
    with _history(database, folder) as (url, schema_name):
        shop = _shop_db(folder)
        start = time.perf_counter()
        seed(frames, url)
        seeded = time.perf_counter() - start
        first = _in_process(["--url", url, "--out", str(folder), "--shop", shop, "--at", synth.AS_OF.isoformat(),
                             "--feed", feed])
        run_log(url, synth.AS_OF, RUN_LOG_HOURS)
        if schema_name is not None:
            # What autovacuum does within minutes of a bulk load (since Postgres 13 an insert-only
            # table is vacuumed too): months of hourly runs leave the planner statistics of the tables
            # they wrote, and their pages marked all-visible, so an index-only scan reads no row. A
            # freshly seeded schema has neither: its index-only scans visit every row they list.
            from lastmile.store import schema as history_schema

            with create_engine(POSTGRES).connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in history_schema.metadata.sorted_tables:
                    conn.execute(text(f'VACUUM ANALYZE "{schema_name}"."{table.name}"'))
        result: dict[str, Any] = {"shipments": len(frames.shipments), "scans": len(frames.scans),
                                  "seed_s": seeded, "first_full_run": first, "database": database, "feed": feed}
        yield  # the history is ready
        previous, runs = synth.AS_OF, {name: [] for name in HOURS}
        codes = frames.shipments.set_index("shipment_id")["tracking_code"]
        before = frames.scans.iloc[:0]
        for k, (after, name) in enumerate(RUNS):
            at = synth.AS_OF + timedelta(hours=after)
            scans = hour_scans(frames, at, previous, HOURS[name], seed_no=100 + k)
            path = folder / f"{k}-{name}.parquet"
            # What the carrier answers with: the hour's new scans, and the previous hour's within the
            # listing's overlap (a listing of changes repeats those; a scan read twice is stored once).
            again = before[before["occurred_at"] >= pd.Timestamp(previous) - LISTING_OVERLAP]
            answer = pd.concat([again, scans], ignore_index=True)
            answer.assign(tracking_code=answer["shipment_id"].map(codes)).to_parquet(path)
            if feed == "pushed":  # pushed while the hour passed: in the history before the hour's run
                from lastmile.store import schema as history_schema

                with create_engine(url).begin() as conn:
                    conn.execute(history_schema.tracker_events.insert(),
                                 pushed_rows(scans, frames.shipments, FEEDS[feed], at))
            run = _in_process(["--url", url, "--out", str(folder), "--shop", shop, "--at", at.isoformat(),
                               "--scans", str(path), "--feed", feed])
            runs[name].append({**run, "new_scans": len(scans), "at": at.isoformat()})
            frames = synth.Frames(frames.shipments, pd.concat([frames.scans, scans], ignore_index=True),
                                  frames.estimates)
            previous, before = at, scans
            yield  # an hour done
    for name, done in runs.items():
        result[name] = {**_median(done), "totals": [r["total"] for r in done]}
    con = synth.duckdb_connect()
    synth.duckdb_load(con, frames.shipments, frames.scans, frames.estimates)
    reference = []
    for _ in range(3):  # the same work each time: its median, like the hours'
        start = time.perf_counter()
        synth.duckdb_detect(con, synth.AS_OF + timedelta(hours=1))
        reference.append(time.perf_counter() - start)
    result["duckdb_s"] = float(np.median(reference))
    return result


def interleaved(sizes: list[int], database: str, folder: Path, feed: str) -> dict[int, dict[str, Any]]:
    """Each size's bench, their histories made one after the other, then their hours in turn.

    A ratio of two sizes compares runs made minutes apart; this kind of machine ran 1.7 times
    slower in one hour than in the next, so all of one size and then all of the other measured the
    machine as much as the history. In turns (each round's order reversed in the next), every hour
    of one size runs beside the same hour of the other."""
    runs = {n: bench(n, database, folder / str(n), feed) for n in sizes}
    results = {}
    try:
        for n in sizes:
            (folder / str(n)).mkdir(parents=True)
            next(runs[n])
        for k in range(len(RUNS)):
            for n in (sizes if k % 2 == 0 else sizes[::-1]):
                next(runs[n])
        for n in sizes:
            try:
                next(runs[n])
            except StopIteration as done:
                results[n] = done.value
    finally:
        for run in runs.values():
            run.close()  # (a size whose run failed: the others' Postgres schemas are dropped now)
    return results


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose total is the median of the runs' (an odd number of runs: one of them)."""
    ranked = sorted(runs, key=lambda r: r["total"])
    return ranked[(len(ranked) - 1) // 2]


def _print(result: dict[str, Any]) -> None:
    print(f"== {result['shipments']} shipments, {result['scans']} scans, {result['database']}, "
          f"carrier feed {result['feed']} "
          f"(seeded in {result['seed_s']:.1f} s; first full run {result['first_full_run']['total']:.1f} s, "
          f"peak RSS {result['first_full_run']['peak_rss_mb']:.0f} MB)")
    print(f"   {'step':<20}" + "".join(f"{h:>11}" for h in HOURS))
    for step in STEPS:
        print(f"   {step:<20}" + "".join(f"{result[h]['seconds'][step]:>10.2f}s" for h in HOURS))
    print(f"   {'total':<20}" + "".join(f"{result[h]['total']:>10.2f}s" for h in HOURS))
    print(f"   {'peak RSS':<20}" + "".join(f"{result[h]['peak_rss_mb']:>8.0f} MB" for h in HOURS))
    for h in HOURS:
        if len(result[h]["totals"]) > 1:
            print(f"   {h} hour, each run: " + ", ".join(f"{t:.2f}s" for t in result[h]["totals"]) + " (the median counts)")
    print(f"   DuckDB reference (detection rules over every shipment, median of 3): {result['duckdb_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shipments", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--databases", nargs="+", default=["sqlite"], choices=("sqlite", "postgres"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url"), parser.add_argument("--out"), parser.add_argument("--shop")
    parser.add_argument("--at"), parser.add_argument("--scans")
    parser.add_argument("--feeds", nargs="+", default=["poll", "changes", "pushed"], choices=tuple(FEEDS),
                        help="how the carrier is read: asked about every parcel in flight (poll: EasyPost "
                             "without a webhook, the simulator), asked what changed (changes: AfterShip), or "
                             "read from what it pushed (pushed: EasyPost's webhook); each its own run")
    parser.add_argument("--feed", choices=tuple(FEEDS), default="changes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_hour(args.url, Path(args.out), args.shop, args.at, args.scans, args.feed)))
        return
    sizes = sorted(args.shipments)
    for database, feed in [(d, f) for d in args.databases for f in args.feeds]:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            results = interleaved(sizes, database, Path(tmp), feed)
        for n in sizes:
            _print(results[n])
        largest = results[sizes[-1]]
        print(f"quiet hour / DuckDB = {largest['quiet']['total'] / largest['duckdb_s']:.2f}   ({database}, {feed})")
        smaller = [n for n in sizes if n * 10 == sizes[-1]]
        if smaller:
            growth = largest["quiet"]["total"] / results[smaller[0]]["quiet"]["total"]
            print(f"quiet hour growth for 10x history = {growth:.2f}   ({database}, {feed})")
            # The quiet hour's change grows with the history (1% of ten times as many parcels in
            # flight); this is what the history alone costs, the change held the same.
            same = largest["fixed"]["total"] / results[smaller[0]]["fixed"]["total"]
            print(f"quiet hour growth for 10x history at equal change ({HOURS['fixed']} new scans) = {same:.2f}"
                  f"   ({database}, {feed})")


if __name__ == "__main__":
    main()
