"""Command line: python -m lastmile {simulate,run,summary,score} ... (see README)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from lastmile.config import Settings


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset, e.g. 2026-11-20T14:00:00+00:00")
    return value


def _track(settings: Settings, args: argparse.Namespace) -> int:
    from lastmile.carriers.accounts import SIMULATED, account_from_env
    from lastmile.steps.feeds import read_feed

    name = args.account or (SIMULATED if args.carrier == SIMULATED else f"{args.carrier}_default")
    account = account_from_env(name)
    shipments = [{"shipment_id": code, "tracking_code": code, "carrier": args.parcel_carrier} for code in args.codes]
    as_of = datetime.now(UTC)
    if account.vendor == SIMULATED:  # the simulator knows its parcels by shipment id: look them up
        from lastmile.sim import simulator

        simulator.ensure(settings.sim_dir, settings.sim_seed, settings.sim_orders)
        known = {s["tracking_code"]: s for s in simulator.read_table(settings.sim_dir, "shipments")}
        shipments = [known[c] for c in args.codes if c in known]
        as_of = datetime.fromisoformat("2026-11-20T14:00:00+00:00")  # the demo's first instant
    feed = read_feed(settings, account, shipments, as_of)
    codes = {s["shipment_id"]: s["tracking_code"] for s in shipments}
    for scan in sorted(feed.parsed.scans, key=lambda s: (s["shipment_id"], s["occurred_at"])):
        local = scan["occurred_at"].astimezone(timezone(timedelta(minutes=scan["utc_offset_minutes"])))
        print(f"{codes.get(scan['shipment_id'], scan['shipment_id']):<24} {local.isoformat():<26} "
              f"{scan['status']:<20} {scan['reason'] or '':<18} {scan['carrier_status']}/"
              f"{scan['carrier_status_detail']}  {scan['message']}")
    for est in feed.parsed.estimates:
        print(f"{codes.get(est['shipment_id'], est['shipment_id']):<24} carrier estimate {est['est_delivery_date']}")
    for rejection in feed.parsed.rejections:
        print(f"quarantined: {rejection.message()}")
    missing = set(args.codes) - {codes.get(s["shipment_id"]) for s in feed.parsed.scans}
    for code in sorted(missing):
        print(f"{code:<24} no scans")
    if feed.error:
        print(f"feed error: {feed.error}", file=sys.stderr)
        return 1
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lastmile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="generate the seeded simulated shop into LASTMILE_SIM_DIR")
    sim.add_argument("--if-missing", action="store_true", help="keep an existing data set for the same seed")
    sub.add_parser("preview", help="render every kind of e-mail with sample data into out/preview/")
    sub.add_parser("migrate", help="bring the history database (LASTMILE_DB_URL) to the newest migration; "
                                   "every other process only checks it")
    bt = sub.add_parser("backtest", help="replay a shop's history export (--history) or an unseen simulated "
                                         "history through the production steps; score detection and windows")
    bt.add_argument("--history", type=Path, metavar="DIR",
                    help="a history export (the files-source tables plus scans.csv; docs/backtest.md)")
    bt.add_argument("--out", type=Path, metavar="OUT", help="with --history: where calls.csv, windows.csv and "
                                                            "report.txt go (default LASTMILE_OUT_DIR/backtest)")
    bt.add_argument("--seed", type=int, default=11, help="a seed the rules were not tuned on (the demo uses 7)")
    bt.add_argument("--orders", type=int, default=3000)
    bt.add_argument("--step-hours", type=int, help="hours between replayed runs (default: 24 for --history, 6 "
                                                   "for the simulator)")
    tr = sub.add_parser("track", help="print the normalised scans of tracking codes, as the DAG would store them")
    tr.add_argument("--carrier", required=True, choices=("easypost", "aftership", "simulated"),
                    help="the tracking API (its account is <carrier>_default unless --account is given)")
    tr.add_argument("--account", help="the Airflow connection id of the account (read from AIRFLOW_CONN_<ID>)")
    tr.add_argument("--parcel-carrier", help="the parcel's carrier (USPS, UPS, ...) when the API cannot guess it")
    tr.add_argument("codes", nargs="+", metavar="CODE")
    rep = sub.add_parser("report", help="the KPI report (late rates, promises kept, exceptions, e-mail) as HTML or CSV")
    rep.add_argument("--since", type=date.fromisoformat, required=True, help="first day covered (YYYY-MM-DD)")
    rep.add_argument("--format", choices=("html", "csv"), default="html")
    rep.add_argument("--out", type=Path, help="file (html) or folder (csv); default under LASTMILE_OUT_DIR/report")
    box = sub.add_parser("outbox", help="messages that need a person: ambiguous or failed; reconcile one")
    box.add_argument("--mark-sent", metavar="KEY", help="the provider did deliver it (seen in its activity log)")
    box.add_argument("--resend", metavar="KEY", help="the provider never got it: plan it again")
    box.add_argument("--drop", metavar="KEY", help="it must never go: drop it (recorded as dropped by you)")
    box.add_argument("--by", metavar="NAME", help="who decides, for the case history (default: your login)")
    for name, text in (("run", "run every step in-process (no Airflow) for one instant"),
                       ("summary", "print what the run for one instant found"),
                       ("score", "score that run's detections against the simulator's ground truth")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--as-of", type=_instant, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "simulate":
        from lastmile.sim import simulator

        config = simulator.SimConfig(seed=settings.sim_seed, n_orders=settings.sim_orders)
        made = (simulator.ensure(settings.sim_dir, config.seed, config.n_orders) if args.if_missing
                else simulator.write(simulator.generate(config), settings.sim_dir) or True)
        manifest = json.loads((settings.sim_dir / "manifest.json").read_text())
        print(f"== simulated shop {'generated' if made else 'already there'}: {settings.sim_dir} "
              f"(seed {manifest['seed']}, {manifest['n_orders']} orders, {manifest['shipments']} shipments)")
        return 0

    if args.command == "migrate":
        from lastmile.store.db import prepare
        from lastmile.store.migrate import shipped_head

        prepare(settings.db_url)
        print(f"== history database at migration {shipped_head()}")
        return 0
    if args.command == "backtest" and args.history is not None:
        from lastmile.evaluation.history import format_replay, replay

        out = args.out or settings.out_dir / "backtest"
        print(format_replay(replay(args.history, out, step_hours=24 if args.step_hours is None else args.step_hours)))
        print(f"== calls, windows and this report: {out}/calls.csv, windows.csv, report.txt")
        return 0
    if args.command == "backtest":
        from lastmile.evaluation.backtest import format_result, run

        print(format_result(run(seed=args.seed, n_orders=args.orders,
                                step_hours=6 if args.step_hours is None else args.step_hours)))
        return 0
    if args.command == "preview":
        from lastmile.email.preview import render_all

        print(f"== every kind of e-mail, rendered: {render_all(settings.out_dir / 'preview')}")
        return 0

    if args.command == "track":
        return _track(settings, args)
    if args.command == "report":
        from lastmile.reporting.report import write
        from lastmile.store.db import engine_for

        default = settings.out_dir / "report" / (f"since-{args.since}.html" if args.format == "html"
                                                 else f"since-{args.since}")
        print(f"== report: {write(engine_for(settings.db_url), args.since, args.out or default, args.format)}")
        return 0

    from lastmile.reporting.summary import format_summary
    from lastmile.steps import pipeline

    if args.command == "outbox":
        import getpass

        from lastmile.core.privacy import mask_emails_in

        try:
            by = args.by or f"{getpass.getuser()} (CLI)"
        except (OSError, KeyError):  # no login name (a container's numeric user): say where it came from
            by = "ops (CLI)"
        for row in pipeline.reconcile(settings, mark_sent=args.mark_sent, resend=args.resend, drop=args.drop, by=by):
            print(f"{row['state']:<10} {row['message_key']:<55} {mask_emails_in(row['state_reason']) or ''}")
        return 0
    if args.command == "run":
        from lastmile.store.db import prepare

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        prepare(settings.db_url)  # the in-process run is its own deployment: it migrates first, explicitly
        print(format_summary(pipeline.run_all(settings, args.as_of)))
    elif args.command == "summary":
        print(format_summary(pipeline.summarise(settings, args.as_of)))
    elif args.command == "score":
        from lastmile.evaluation.scoring import detections_and_truth, format_scores, score

        print(format_scores(score(*detections_and_truth(settings, args.as_of), args.as_of)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line. A failure prints one line -- its class, SQLSTATE and a masked message, as the
    alerts do -- never a statement's parameters, a driver's DETAIL with a customer's row, or a
    password. LASTMILE_TRACEBACK=1 shows the whole traceback (for a developer's own data)."""
    import os

    try:
        return _main(argv)
    except Exception as err:  # noqa: BLE001 -- every failure is reported the same safe way
        if os.environ.get("LASTMILE_TRACEBACK") == "1":
            raise
        from lastmile.steps.errors import describe

        print(f"lastmile: failed: {describe(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
