"""The run summary as ops read it: in the last task's log and from `python -m lastmile summary`."""

from __future__ import annotations

from typing import Any


def format_summary(summary: dict[str, Any]) -> str:
    """What was found, who was told and what failed, one topic per line."""
    def kv(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    feeds = summary.get("feeds", {})
    down = {a: f for a, f in feeds.items() if f.get("state") != "ok"}
    if summary.get("ran") is False:
        return (f"== lastmile run {summary['batch']}\nno run is recorded for this instant "
                f"(history {summary['history_db']}): nothing was found, told or sent")
    lines = [
        f"== lastmile run {summary['batch']}",
        f"orders seen          {summary['orders']}   shipments seen {summary['shipments']}   "
        f"new scans {summary['scans_new']}",
        f"carrier feeds        {kv({a: f.get('state') for a, f in feeds.items()})}"
        + (f"   ALERT: {', '.join(down)} not ok; {summary.get('unknown_state_shipments', 0)} parcels in an "
           f"unknown state" if down else ""),
        f"exceptions (open)    {kv(summary['exceptions_open_by_type'])}",
        f"exceptions (all)     {kv(summary['exceptions_all_by_type'])}",
        f"cases                {kv(summary['cases_by_state'])}",
        f"emails this run      {summary['emails_sent_this_run']} written, {summary['emails_failed_this_run']} failed "
        f"(for this logical date in all: {kv(summary['messages_planned_this_run'])})",
        f"e-mail languages     planned this run: {kv(summary.get('languages_planned_this_run', {}))}; "
        f"fell back: {_fallbacks(summary.get('language_fallbacks_this_run', {}))}",
        f"outbox in all        {kv(summary['outbox_by_state'])}; sent by kind {kv(summary['sent_by_kind'])}",
        f"quarantined records  new this run: {kv(summary.get('quarantined_this_run', {}))}; "
        f"in all: {kv(summary['quarantined_by_source'])}",
        f"unmapped carrier codes  new this run: {kv(summary.get('unmapped_codes_this_run', {}))}; "
        f"last 7 days: {kv(summary.get('unmapped_codes_last_7_days', {}))}"
        + ("   ALERT: scans our vocabulary does not know (docs/status-taxonomy.md)"
           if summary.get("unmapped_codes_this_run") else ""),
        f"read the e-mails     {summary['outbox_index']}",
        f"exception history    {summary['history_db']}  (tables: cases, case_events, outbox, quarantine, feed_health)",
    ]
    return "\n".join(lines)


def _fallbacks(fallbacks: dict[str, int]) -> str:
    """'none', or how many e-mails went out in another language than their customer's locale and why:
    '3 (de_AT → de 2, xx_YY → en 1)' (no catalog for de_AT: German; none for xx: English)."""
    if not fallbacks:
        return "none"
    return f"{sum(fallbacks.values())} ({', '.join(f'{k} {v}' for k, v in fallbacks.items())})"
