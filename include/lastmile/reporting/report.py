"""The KPI report for ops and analysts: the analyst views, summarised, as one HTML page or CSV files.

Every figure comes from the `v_*` views (docs/history-schema.md), so the report and an analyst's
own SQL always agree. The HTML is self-contained (inline CSS, and charts drawn by Altair and rendered
to static SVG by vl-convert, no script): it opens from a file, a mail attachment or an artifact store
without any network. Charts show aggregates only (carriers, weeks, exception types), never a customer.
The HTML shows shares as percentages; the CSV keeps the raw numbers (0.875) for analysts to compute with.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import Engine, text


@dataclass(frozen=True)
class Chart:
    """What to draw, from aggregates only: one line per `series` over time (`x` holds ISO dates), or
    one horizontal bar per category (`x` holds the categories). `percent`: `y` is a share (0..1)."""

    title: str
    data: pd.DataFrame
    x: str
    y: str
    x_title: str
    y_title: str
    series: str | None = None  # one line per value of this column, e.g. the carrier
    series_title: str = ""
    kind: Literal["lines", "bars"] = "lines"
    percent: bool = False
    weekly: bool = False  # `x` holds the Monday of each week: one tick per week


@dataclass(frozen=True)
class Section:
    name: str  # the CSV file name
    title: str
    note: str
    table: pd.DataFrame
    charts: tuple[Chart, ...] = ()


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
    # v_exceptions_weekly is the slowest view: read once, summed by type here and by week below.
    per_week = _read(engine, "SELECT carrier, week, exception_type, sum(exceptions) AS exceptions, "
                             "sum(shipments) AS shipments FROM v_exceptions_weekly WHERE week >= :d "
                             "GROUP BY carrier, week, exception_type", d=day)
    # A type's own rows count only the lanes and weeks that had that type: a carrier's shipments are
    # on its `any` rows.
    shipped = per_week[per_week["exception_type"] == "any"].groupby("carrier")["shipments"].sum()
    weekly = (per_week[per_week["exception_type"] != "any"]
              .groupby(["carrier", "exception_type"], as_index=False)["exceptions"].sum()
              .sort_values(["exceptions", "carrier", "exception_type"], ascending=[False, True, True],
                           ignore_index=True))
    weekly["shipments"] = weekly["carrier"].map(shipped).fillna(0).astype(int)
    weekly["exception_rate"] = weekly["exceptions"] / weekly["shipments"].where(weekly["shipments"] > 0)
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
    weeks = _weekly_rates(per_week)
    kept_weekly = _weekly_kept(engine, day)
    emails = runs.melt(id_vars="day", value_vars=["messages_sent", "messages_failed"], var_name="what",
                       value_name="messages").replace({"what": {"messages_sent": "sent",
                                                                "messages_failed": "failed"}})
    return [
        Section("late_rate_monthly", "Late rate per carrier and month",
                "The chart: shipments that were late, per carrier and week shipped (the newest weeks are "
                "provisional: parcels still on their way may yet be late). The table: shipments due in the "
                "month that were late; `change` is against the month before, in percentage points.",
                late, (Chart("Late rate per carrier, by week shipped", weeks, "week", "late_rate",
                             "Week shipped (from Monday)", "Shipments late", series="carrier",
                             series_title="Carrier", percent=True, weekly=True),)),
        Section("promises_kept", "Did we keep our promises?",
                "Windows we sent, by the month they ended: kept (delivered by the last day), broken, pending. "
                "The chart: the share kept per carrier and week the window ended, of the windows already over.",
                kept, (Chart("Promises kept per carrier, by week the window ended", kept_weekly, "week",
                             "share_kept", "Week the window ended (from Monday)", "Windows kept",
                             series="carrier", series_title="Carrier", percent=True, weekly=True),)),
        Section("exceptions_by_carrier", "Exceptions by carrier and type",
                "Shipments (labelled since the date) that ever had each exception, of all the carrier's "
                "shipments labelled since then. The chart: the share of "
                "shipments with any exception (a reshipment alone aside), per carrier and week shipped.", weekly,
                (Chart("Shipments with an exception per carrier, by week shipped", weeks, "week",
                       "exception_rate", "Week shipped (from Monday)", "Shipments with an exception",
                       series="carrier", series_title="Carrier", percent=True, weekly=True),)),
        Section("exceptions_by_type", "Exceptions by type", "All carriers together.", by_type,
                (Chart("Exceptions by type, all carriers", by_type, "exception_type", "exceptions",
                       "Exception type", "Shipments with the exception", kind="bars"),)),
        Section("time_to_email", "From first evidence to the customer's e-mail",
                "Hours, per exception type; cases resolved before anyone needed telling are left out.",
                _quantiles(to_email, "exception_type", "hours_to_email")),
        Section("time_to_resolution", "From first evidence to delivery", "Hours, per exception type.",
                _quantiles(to_resolve, "exception_type", "hours_to_resolution")),
        Section("reshipment_chains", "Reshipment chains", "Order lines by how many parcels it took.", chains),
        Section("message_delivery", "E-mail delivery", "Per ISO week and kind, from the provider's events.",
                delivery),
        Section("runs_per_day", "Runs per day", "Carrier feeds down, scans, detections and e-mails per day.",
                runs, (Chart("E-mails sent and failed per day", emails, "day", "messages", "Day of the run",
                             "E-mails", series="what", series_title="E-mails"),)),
    ]


def _weekly_rates(per_week: pd.DataFrame) -> pd.DataFrame:
    """Per carrier and week shipped (its Monday): shipments, late ones, ones with any exception, and the rates.

    A week's shipments are on its `any` row of v_exceptions_weekly (a type's own row sums only the
    lanes where that type happened), so both rates divide by them."""
    if per_week.empty:
        return pd.DataFrame(columns=["carrier", "week", "shipments", "late", "with_exception", "late_rate",
                                     "exception_rate"])
    frame = per_week.assign(exceptions=pd.to_numeric(per_week["exceptions"]).astype(float),
                            shipments=pd.to_numeric(per_week["shipments"]).astype(float),
                            week=_iso_days(per_week["week"]))
    counts = frame.pivot_table(index=["carrier", "week"], columns="exception_type", values="exceptions",
                               aggfunc="sum", fill_value=0.0)
    out = pd.DataFrame({
        "shipments": frame[frame["exception_type"] == "any"].groupby(["carrier", "week"])["shipments"].sum(),
        "late": counts["late"] if "late" in counts else 0.0,
        "with_exception": counts["any"] if "any" in counts else 0.0,
    }).reset_index()
    shipments = out["shipments"].where(out["shipments"] > 0)
    return out.assign(late_rate=out["late"] / shipments, exception_rate=out["with_exception"] / shipments
                      ).sort_values(["week", "carrier"], ignore_index=True)


def _weekly_kept(engine: Engine, day: str) -> pd.DataFrame:
    """Per carrier and week the window ended (its Monday): windows over by the newest run, the share kept.

    Only windows that are over count (as v_promises decides: their last day has ended everywhere, 36 h
    after it began in UTC); a week still under way would otherwise show only its early deliveries."""
    frame = _read(engine, "SELECT carrier, window_latest, kept FROM v_promises WHERE window_latest >= :d", d=day)
    newest = _read(engine, "SELECT max(as_of) AS as_of FROM v_runs")["as_of"]
    as_of = pd.to_datetime(newest, utc=True).iloc[0] if not newest.empty else pd.NaT
    ended = pd.to_datetime(frame["window_latest"])
    frame = frame[ended.dt.tz_localize("UTC") + pd.Timedelta(hours=36) <= as_of] if pd.notna(as_of) else frame[:0]
    if frame.empty:
        return pd.DataFrame(columns=["carrier", "week", "windows", "share_kept"])
    ended = pd.to_datetime(frame["window_latest"])
    frame = pd.DataFrame({"carrier": frame["carrier"].fillna("unknown"),
                          "week": (ended - pd.to_timedelta(ended.dt.weekday, unit="D")).dt.strftime("%Y-%m-%d"),
                          "kept": pd.to_numeric(frame["kept"]).astype(float)})
    g = frame.groupby(["carrier", "week"])["kept"]
    out = pd.DataFrame({"windows": g.count(), "share_kept": g.sum(min_count=1) / g.count()}).reset_index()
    return out.sort_values(["week", "carrier"], ignore_index=True)


def _iso_days(column: pd.Series) -> pd.Series:
    """Dates as 'YYYY-MM-DD' text, whether the database gave text (SQLite) or dates (Postgres)."""
    return pd.to_datetime(column).dt.strftime("%Y-%m-%d")


def _svg(chart: Chart, data: pd.DataFrame, key: str) -> str:
    """The chart as static SVG: Altair's spec, rendered by vl-convert in-process (no script, no network)."""
    import altair as alt  # slow to import: only when a report is drawn
    import vl_convert

    value_axis = alt.Axis(format=".0%") if chart.percent else alt.Axis(format=",d", tickMinStep=1)
    if chart.kind == "bars":
        plot = alt.Chart(data).mark_bar(color="#2f6db0").encode(
            y=alt.Y(f"{chart.x}:N", title=chart.x_title, sort="-x"),
            x=alt.X(f"{chart.y}:Q", title=chart.y_title, axis=value_axis),
        ).properties(width=420, height={"step": 20})
    else:
        ticks = ([int(pd.Timestamp(d, tz="UTC").timestamp() * 1000) for d in sorted(data[chart.x].unique())]
                 if chart.weekly else alt.Undefined)
        plot = alt.Chart(data).mark_line(point=data[chart.x].nunique() <= 20).encode(
            x=alt.X(f"{chart.x}:T", title=chart.x_title, scale=alt.Scale(type="utc"),
                    axis=alt.Axis(format="%-d %b", values=ticks, labelOverlap=True)),
            y=alt.Y(f"{chart.y}:Q", title=chart.y_title, axis=value_axis),
            color=alt.Color(f"{chart.series}:N", title=chart.series_title) if chart.series else alt.Undefined,
        ).properties(width=520, height=220)
    svg = vl_convert.vegalite_to_svg(plot.properties(title=chart.title).to_json())
    # Several SVGs share one page: keep any ids they define (clips, gradients) apart.
    return re.sub(r'(\sid="|url\(#|href="#)([^")]+)', rf"\g<1>{key}-\g<2>", svg)


def _chart_html(chart: Chart, key: str) -> str:
    columns = [chart.x, chart.y] + ([chart.series] if chart.series else [])
    data = chart.data[columns].dropna() if not chart.data.empty else chart.data
    if data.empty:
        return f"<p class=empty>No data in this period for the chart “{html.escape(chart.title)}”.</p>"
    data = data.assign(**{chart.y: pd.to_numeric(data[chart.y]).astype(float)})
    return f"<figure class=chart>{_svg(chart, data, key)}</figure>"


def _is_share(column: str) -> bool:
    return column.endswith("_rate") or column.startswith("share_")


def _percent(value: object) -> str:
    """A share as a percentage: 1 -> '100%', 0.875 -> '87.5%'; '100%' and '0%' only when exactly so."""
    if pd.isna(value):
        return "–"
    share = float(value)
    shown = f"{share * 100:.1f}".removesuffix(".0")
    if shown == "100" and share < 1:
        return ">99.9%"
    if shown == "0" and share > 0:
        return "<0.1%"
    return f"{shown}%"


def _points(value: object) -> str:
    """A difference of two shares, in percentage points: 0.0799 -> '+8.0 pp'."""
    return "–" if pd.isna(value) else f"{float(value) * 100 + 0.0:+.1f} pp"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class=empty>Nothing in this period.</p>"
    formatters = {c: _percent for c in frame.columns if _is_share(c)} | (
        {"change": _points} if "change" in frame.columns else {})
    # As floats (Postgres gives Decimals, a column of NULLs is None): pandas shows NaN as na_rep.
    frame = frame.assign(**{c: pd.to_numeric(frame[c]).astype(float) for c in formatters})
    return frame.to_html(index=False, border=0, classes="kpi", na_rep="–", formatters=formatters,
                         float_format=lambda x: f"{x:.4g}")


def to_html(sections: list[Section], since: date, source: str) -> str:
    body = []
    for s in sections:
        charts = "".join(_chart_html(c, f"{s.name}-{i}") for i, c in enumerate(s.charts))
        body.append(f"<section id='{s.name}'><h2>{html.escape(s.title)}</h2><p>{html.escape(s.note)}</p>"
                    f"{charts}{_table(s.table)}</section>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>lastmile — delivery exceptions since "
            f"{since.isoformat()}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}}"
            "h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table.kpi{border-collapse:collapse;"
            "font-size:.85rem}table.kpi th,table.kpi td{padding:.25rem .6rem;border-bottom:1px solid #dde2ea;"
            "text-align:right}table.kpi th:first-child,table.kpi td:first-child{text-align:left}"
            ".empty{color:#667}figure.chart{margin:1rem 0}figure.chart svg{max-width:100%;height:auto}</style></head><body>"
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
