"""The KPI report for ops and analysts: the analyst views, summarised, as one HTML page or CSV files.

Every figure comes from the `v_*` views (docs/history-schema.md), so the report and an analyst's
own SQL always agree. The HTML is self-contained (inline CSS and SVG): it opens from a file, a
mail attachment or an artifact store without any network.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, text


@dataclass(frozen=True)
class Section:
    name: str  # the CSV file name
    title: str
    note: str
    table: pd.DataFrame
    chart: tuple[pd.DataFrame, str, str] | None = None  # (rows, label column, value column) for a bar chart


def _read(engine: Engine, sql: str, **params: object) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def _quantiles(frame: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    done = frame.dropna(subset=[value])
    if done.empty:
        return pd.DataFrame(columns=[by, "cases", "p50_hours", "p95_hours"])
    g = done.groupby(by)[value]
    return pd.DataFrame({"cases": g.size(), "p50_hours": g.quantile(0.5).round(1),
                         "p95_hours": g.quantile(0.95).round(1)}).reset_index()


def build(engine: Engine, since: date) -> list[Section]:
    """The report's sections for everything from `since` (a date) on."""
    month, day = since.strftime("%Y-%m"), since.isoformat()
    late = _read(engine, "SELECT carrier, month, shipments, late, late_rate, previous_late_rate, change "
                         "FROM v_late_rate_monthly WHERE month >= :m ORDER BY month, carrier", m=month)
    kept = _read(engine, "SELECT carrier, month, windows_sent, kept, broken, pending, share_kept "
                         "FROM v_promises_kept WHERE month >= :m ORDER BY month, carrier", m=month)
    weekly = _read(engine, "SELECT carrier, exception_type, sum(exceptions) AS exceptions, "
                           "sum(shipments) AS shipments FROM v_exceptions_weekly WHERE week >= :d "
                           "AND exception_type <> 'any' GROUP BY carrier, exception_type "
                           "ORDER BY exceptions DESC", d=day)
    by_type = weekly.groupby("exception_type", as_index=False)["exceptions"].sum().sort_values(
        "exceptions", ascending=False)
    to_email = _read(engine, "SELECT month, exception_type, hours_to_email FROM v_time_to_email WHERE month >= :m",
                     m=month)
    to_resolve = _read(engine, "SELECT exception_type, hours_to_resolution FROM v_time_to_resolution "
                               "WHERE resolved_month >= :m", m=month)
    chains = _read(engine, "SELECT shipments_in_chain, count(*) AS order_lines, sum(delivered) AS delivered "
                           "FROM v_reshipment_chains WHERE first_created_at >= :d GROUP BY shipments_in_chain "
                           "ORDER BY shipments_in_chain", d=day)
    delivery = _read(engine, "SELECT iso_week, kind, sent, delivered, bounced, delivery_rate, bounce_rate, "
                             "open_rate, spam_rate FROM v_message_delivery WHERE week >= :d "
                             "ORDER BY week, kind", d=day)
    runs = _read(engine, "SELECT substr(batch_key, 1, 10) AS day, count(*) AS runs, sum(feeds_down) AS feeds_down, "
                         "sum(scans_new) AS scans_new, max(detections) AS detections, "
                         "sum(messages_sent) AS messages_sent, sum(messages_failed) AS messages_failed "
                         "FROM v_runs WHERE batch_key >= :d GROUP BY substr(batch_key, 1, 10) ORDER BY day", d=day)
    # "This month" is the month of the newest run, as in the views (never the wall clock).
    current = _read(engine, "SELECT month FROM v_runs ORDER BY as_of DESC LIMIT 1")
    newest = str(current.iloc[0, 0]) if not current.empty else None
    this_month = late[late["month"] == newest]
    return [
        Section("late_rate_monthly", "Late rate per carrier and month",
                f"Shipments due in the month that were late; the bars are {newest or 'the newest run’s month'} "
                "(provisional while parcels are still due). `change` is against the month before.",
                late, (this_month, "carrier", "late_rate") if not this_month.empty else None),
        Section("promises_kept", "Did we keep our promises?",
                f"Windows we sent, by the month they ended: kept (delivered by the last day), broken, pending. "
                f"The bars are the share kept in {newest or 'the newest run’s month'}.",
                kept, (kept[kept["month"] == newest], "carrier", "share_kept") if not kept.empty else None),
        Section("exceptions_by_carrier", "Exceptions by carrier and type",
                "Shipments (labelled since the date) that ever had each exception.", weekly,
                None),
        Section("exceptions_by_type", "Exceptions by type", "All carriers together.", by_type,
                (by_type, "exception_type", "exceptions") if not by_type.empty else None),
        Section("time_to_email", "From first evidence to the customer's e-mail",
                "Hours, per exception type; cases resolved before anyone needed telling are left out.",
                _quantiles(to_email, "exception_type", "hours_to_email"), None),
        Section("time_to_resolution", "From first evidence to delivery", "Hours, per exception type.",
                _quantiles(to_resolve, "exception_type", "hours_to_resolution"), None),
        Section("reshipment_chains", "Reshipment chains", "Order lines by how many parcels it took.", chains,
                None),
        Section("message_delivery", "E-mail delivery", "Per ISO week and kind, from the provider's events.",
                delivery, None),
        Section("runs_per_day", "Runs per day", "Carrier feeds down, scans, detections and e-mails per day.",
                runs, (runs, "day", "messages_sent") if not runs.empty else None),
    ]


def _bars(frame: pd.DataFrame, label: str, value: str) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no network)."""
    data = frame[[label, value]].dropna()
    if data.empty:
        return ""
    data = data.groupby(label, as_index=False)[value].last()
    top = float(data[value].max()) or 1.0
    row, width = 22, 360
    parts = [f'<svg role="img" aria-label="{html.escape(value)} by {html.escape(label)}" width="{width + 260}" '
             f'height="{row * len(data) + 8}" xmlns="http://www.w3.org/2000/svg">']
    for i, (name, v) in enumerate(zip(data[label], data[value], strict=True)):
        y = i * row + 4
        length = max(1.0, float(v) / top * width)
        shown = f"{float(v):.1%}" if value.endswith(("rate", "kept")) else f"{float(v):g}"
        parts.append(f'<text x="150" y="{y + 14}" text-anchor="end" font-size="12">{html.escape(str(name))}</text>'
                     f'<rect x="158" y="{y}" width="{length:.1f}" height="16" fill="#2f6db0"/>'
                     f'<text x="{164 + length:.1f}" y="{y + 13}" font-size="12">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(sections: list[Section], since: date, source: str) -> str:
    body = []
    for s in sections:
        chart = _bars(*s.chart) if s.chart else ""
        table = (s.table.to_html(index=False, border=0, classes="kpi", na_rep="–", float_format=lambda x: f"{x:.4g}")
                 if not s.table.empty else "<p class=empty>Nothing in this period.</p>")
        body.append(f"<section id='{s.name}'><h2>{html.escape(s.title)}</h2><p>{html.escape(s.note)}</p>"
                    f"{chart}{table}</section>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lastmile — delivery exceptions since "
            f"{since.isoformat()}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}}"
            "h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table.kpi{border-collapse:collapse;"
            "font-size:.85rem}table.kpi th,table.kpi td{padding:.25rem .6rem;border-bottom:1px solid #dde2ea;"
            "text-align:right}table.kpi th:first-child,table.kpi td:first-child{text-align:left}"
            ".empty{color:#667}</style></head><body>"
            f"<h1>Delivery exceptions since {since.isoformat()}</h1><p>From the exception history "
            f"(<code>{html.escape(source)}</code>), views <code>v_*</code> — see docs/analyst-cookbook.md.</p>"
            + "".join(body) + "</body></html>")


def write(engine: Engine, since: date, out: Path, fmt: str = "html") -> Path:
    """Write the report: one HTML file, or a folder with one CSV per section. Returns the path."""
    sections = build(engine, since)
    if fmt == "csv":
        out.mkdir(parents=True, exist_ok=True)
        for s in sections:
            s.table.to_csv(out / f"{s.name}.csv", index=False)
        return out
    if fmt != "html":
        raise ValueError(f"report format {fmt!r}: expected html or csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_html(sections, since, engine.url.render_as_string(hide_password=True)), encoding="utf-8")
    return out
