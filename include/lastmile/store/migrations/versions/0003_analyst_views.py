"""Analyst views (v_*): exceptions, late rates, promises kept, time to e-mail and to resolution,
reshipment chains, message delivery, runs and open cases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

One SQL text per view for both databases; the few expressions that differ (months, ISO weeks,
hours between instants, local dates, JSON) come from the dialect's helper below. Every view is
documented in docs/history-schema.md. Frozen: it imports nothing from lastmile; a later change to
a view is a new migration that drops and recreates it.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


class _SQLite:
    """SQLite keeps instants as UTC text ('2026-11-20 14:00:00.000000') and dates as 'YYYY-MM-DD'."""

    @staticmethod
    def month(ts: str) -> str:
        return f"strftime('%Y-%m', {ts})"

    @staticmethod
    def month_of_date(day: str) -> str:
        return f"strftime('%Y-%m', {day})"

    @staticmethod
    def previous_month(month: str) -> str:
        return f"strftime('%Y-%m', {month} || '-01', '-1 month')"

    @staticmethod
    def week(ts: str) -> str:  # the Monday that starts the ISO week
        return f"date({ts}, 'weekday 0', '-6 days')"

    @staticmethod
    def iso_week(ts: str) -> str:  # e.g. 2026-W47: the year and week of the week's Thursday
        thursday = f"date({ts}, 'weekday 0', '-3 days')"
        return (f"(strftime('%Y', {thursday}) || '-W' || "
                f"printf('%02d', (CAST(strftime('%j', {thursday}) AS INTEGER) + 6) / 7))")

    @staticmethod
    def hours(start: str, end: str) -> str:
        return f"ROUND((julianday({end}) - julianday({start})) * 24.0, 2)"

    @staticmethod
    def days(start: str, end: str) -> str:
        return f"ROUND(julianday({end}) - julianday({start}), 2)"

    @staticmethod
    def local_date(ts: str, offset_minutes: str) -> str:
        return f"date({ts}, {offset_minutes} || ' minutes')"

    @staticmethod
    def day_over_everywhere(ts: str, day: str) -> str:  # `day` has ended in every time zone (UTC-12)
        return f"(julianday({ts}) >= julianday({day}) + 1.5)"

    @staticmethod
    def json_int(column: str, key: str) -> str:
        return f"CAST(json_extract({column}, '$.{key}') AS INTEGER)"


class _Postgres:
    """Postgres: timestamptz read in UTC, whatever the session's TimeZone."""

    @staticmethod
    def month(ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM')"

    @staticmethod
    def month_of_date(day: str) -> str:  # a calendar date has no zone: never shift it through one
        return f"to_char({day}, 'YYYY-MM')"

    @staticmethod
    def previous_month(month: str) -> str:
        return f"to_char(to_date({month} || '-01', 'YYYY-MM-DD') - INTERVAL '1 month', 'YYYY-MM')"

    @staticmethod
    def week(ts: str) -> str:
        return f"CAST(date_trunc('week', {ts} AT TIME ZONE 'UTC') AS date)"

    @staticmethod
    def iso_week(ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'IYYY-\"W\"IW')"

    @staticmethod
    def hours(start: str, end: str) -> str:
        return f"ROUND(CAST(EXTRACT(EPOCH FROM ({end} - {start})) / 3600.0 AS numeric), 2)"

    @staticmethod
    def days(start: str, end: str) -> str:
        return f"ROUND(CAST(EXTRACT(EPOCH FROM ({end} - {start})) / 86400.0 AS numeric), 2)"

    @staticmethod
    def local_date(ts: str, offset_minutes: str) -> str:
        return f"CAST(({ts} AT TIME ZONE 'UTC') + {offset_minutes} * INTERVAL '1 minute' AS date)"

    @staticmethod
    def day_over_everywhere(ts: str, day: str) -> str:
        return f"({ts} >= (CAST({day} AS timestamp) AT TIME ZONE 'UTC') + INTERVAL '36 hours')"

    @staticmethod
    def json_int(column: str, key: str) -> str:
        return f"CAST(CAST({column} AS json) ->> '{key}' AS integer)"


def _rate(part: str, whole: str) -> str:
    return f"ROUND(1.0 * ({part}) / NULLIF({whole}, 0), 4)"


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def views(d: type[_SQLite] | type[_Postgres]) -> list[tuple[str, str]]:
    """(name, SELECT) in dependency order."""
    return [
        ("v_shipment_outcomes", f"""
WITH first_delivery AS (
    SELECT shipment_id, occurred_at AS delivered_at,
           {d.local_date('occurred_at', 'utc_offset_minutes')} AS delivered_local_date,
           ROW_NUMBER() OVER (PARTITION BY shipment_id ORDER BY occurred_at, scan_id) AS nth
    FROM scans WHERE status = 'delivered'
), flagged AS (
    SELECT shipment_id,
           MAX({_flag("exception_type = 'late'")}) AS late,
           MAX({_flag("exception_type <> 'reshipped'")}) AS had_exception,
           MIN(first_evidence_at) AS first_evidence_at
    FROM detections GROUP BY shipment_id
)
SELECT s.shipment_id, s.order_line_id, s.order_id, s.carrier, s.service,
       s.origin, s.destination, s.origin || ' → ' || s.destination AS lane,
       s.sequence, s.replaces_shipment_id, s.created_at, s.promised_date,
       {d.month_of_date('s.promised_date')} AS due_month,
       {d.week('s.created_at')} AS ship_week, {d.iso_week('s.created_at')} AS ship_iso_week,
       fd.delivered_at, fd.delivered_local_date, {_flag('fd.delivered_at IS NOT NULL')} AS delivered,
       COALESCE(f.late, 0) AS late, COALESCE(f.had_exception, 0) AS had_exception,
       f.first_evidence_at
FROM shipments s
LEFT JOIN first_delivery fd ON fd.shipment_id = s.shipment_id AND fd.nth = 1
LEFT JOIN flagged f ON f.shipment_id = s.shipment_id"""),

        ("v_exceptions_weekly", f"""
WITH cohort AS (
    SELECT carrier, service, lane, ship_week AS week, ship_iso_week AS iso_week,
           COUNT(*) AS shipments, SUM(had_exception) AS with_exception
    FROM v_shipment_outcomes GROUP BY carrier, service, lane, ship_week, ship_iso_week
), by_type AS (
    SELECT o.carrier, o.service, o.lane, o.ship_week AS week, d.exception_type,
           COUNT(DISTINCT d.shipment_id) AS exceptions
    FROM v_shipment_outcomes o JOIN detections d ON d.shipment_id = o.shipment_id
    GROUP BY o.carrier, o.service, o.lane, o.ship_week, d.exception_type
)
SELECT c.carrier, c.service, c.lane, c.week, c.iso_week, t.exception_type,
       c.shipments, t.exceptions, {_rate('t.exceptions', 'c.shipments')} AS rate
FROM cohort c JOIN by_type t
  ON t.carrier = c.carrier AND t.service = c.service AND t.lane = c.lane AND t.week = c.week
UNION ALL
SELECT c.carrier, c.service, c.lane, c.week, c.iso_week, 'any',
       c.shipments, c.with_exception, {_rate('c.with_exception', 'c.shipments')}
FROM cohort c"""),

        ("v_late_rate_monthly", f"""
WITH monthly AS (
    SELECT carrier, due_month AS month, COUNT(*) AS shipments, SUM(delivered) AS delivered,
           SUM(late) AS late, {_rate('SUM(late)', 'COUNT(*)')} AS late_rate
    FROM v_shipment_outcomes GROUP BY carrier, due_month
)
SELECT m.carrier, m.month, m.shipments, m.delivered, m.late, m.late_rate,
       {d.previous_month('m.month')} AS previous_month, p.late_rate AS previous_late_rate,
       m.late_rate - p.late_rate AS change
FROM monthly m
LEFT JOIN monthly p ON p.carrier = m.carrier AND p.month = {d.previous_month('m.month')}"""),

        ("v_promises", f"""
WITH sent AS (
    SELECT message_key, case_id, kind, window_earliest, window_latest, sent_at, planned_at, planned_batch,
           ROW_NUMBER() OVER (PARTITION BY case_id, window_earliest, window_latest
                              ORDER BY sent_at, message_key) AS nth,
           COUNT(*) OVER (PARTITION BY case_id, window_earliest, window_latest) AS times_sent
    FROM outbox
    WHERE state = 'sent' AND sent_at IS NOT NULL AND window_latest IS NOT NULL
), promise AS (
    SELECT sent.message_key, sent.case_id, sent.kind, sent.window_earliest, sent.window_latest,
           sent.sent_at, sent.planned_batch, sent.times_sent, c.order_line_id,
           CASE WHEN c.window_earliest = sent.window_earliest AND c.window_latest = sent.window_latest
                THEN c.window_basis END AS case_basis,
           (SELECT s.shipment_id FROM shipments s
             WHERE s.order_line_id = c.order_line_id AND s.created_at <= sent.planned_at
             ORDER BY s.sequence DESC LIMIT 1) AS shipment_id
    FROM sent JOIN cases c ON c.case_id = sent.case_id
    WHERE sent.nth = 1
), delivery AS (
    SELECT p.message_key, MIN(o.delivered_at) AS delivered_at,
           MIN(o.delivered_local_date) AS delivered_local_date
    FROM promise p
    JOIN shipments ps ON ps.shipment_id = p.shipment_id
    JOIN v_shipment_outcomes o
      ON o.order_line_id = p.order_line_id AND o.sequence >= ps.sequence AND o.delivered = 1
    GROUP BY p.message_key
), latest AS (
    SELECT MAX(as_of) AS as_of FROM run_steps
)
SELECT p.message_key, p.case_id, p.order_line_id, p.shipment_id, s.carrier, s.service, p.kind,
       p.window_earliest, p.window_latest,
       COALESCE((SELECT MIN(dt.window_basis) FROM detections dt
                  WHERE dt.batch_key = p.planned_batch AND dt.shipment_id = p.shipment_id
                    AND dt.window_earliest = p.window_earliest AND dt.window_latest = p.window_latest),
                p.case_basis) AS basis,
       p.sent_at, p.times_sent, {d.month_of_date('p.window_latest')} AS due_month,
       dv.delivered_at, dv.delivered_local_date,
       CASE WHEN dv.delivered_local_date IS NOT NULL
            THEN {_flag('dv.delivered_local_date <= p.window_latest')}
            WHEN {d.day_over_everywhere('latest.as_of', 'p.window_latest')} THEN 0 END AS kept,
       CASE WHEN dv.delivered_local_date IS NOT NULL AND dv.delivered_local_date <= p.window_latest THEN 'kept'
            WHEN dv.delivered_local_date IS NOT NULL THEN 'broken'
            WHEN {d.day_over_everywhere('latest.as_of', 'p.window_latest')} THEN 'broken'
            ELSE 'pending' END AS outcome
FROM promise p
CROSS JOIN latest
LEFT JOIN shipments s ON s.shipment_id = p.shipment_id
LEFT JOIN delivery dv ON dv.message_key = p.message_key"""),

        ("v_promises_kept", f"""
SELECT carrier, due_month AS month, COUNT(*) AS windows_sent,
       SUM({_flag('kept = 1')}) AS kept, SUM({_flag('kept = 0')}) AS broken,
       SUM({_flag('kept IS NULL')}) AS pending,
       {_rate(f"SUM({_flag('kept = 1')})", 'SUM(CASE WHEN kept IS NOT NULL THEN 1 ELSE 0 END)')} AS share_kept
FROM v_promises GROUP BY carrier, due_month"""),

        ("v_time_to_email", f"""
WITH first_notice AS (
    SELECT case_id, MIN(COALESCE(send_at, sent_at)) AS first_notice_at
    FROM outbox WHERE kind = 'notice' AND state = 'sent' AND sent_at IS NOT NULL
    GROUP BY case_id
)
SELECT c.case_id, c.order_line_id, s.carrier, s.service, c.exception_type, c.state,
       c.first_evidence_at, c.opened_at, n.first_notice_at,
       {d.hours('c.first_evidence_at', 'c.opened_at')} AS hours_to_detect,
       {d.hours('c.first_evidence_at', 'n.first_notice_at')} AS hours_to_email,
       {d.month('c.first_evidence_at')} AS month
FROM cases c
LEFT JOIN shipments s ON s.shipment_id = c.shipment_id
LEFT JOIN first_notice n ON n.case_id = c.case_id"""),

        ("v_time_to_resolution", f"""
SELECT c.case_id, c.order_line_id, s.carrier, s.service, c.exception_type, c.state, c.resolution,
       c.shipments_in_chain, c.first_evidence_at, c.opened_at, c.resolved_at,
       {d.hours('c.first_evidence_at', 'c.resolved_at')} AS hours_to_resolution,
       CASE WHEN c.resolved_at < c.opened_at THEN 0
            ELSE {d.hours('c.opened_at', 'c.resolved_at')} END AS hours_open,
       {d.month('c.resolved_at')} AS resolved_month
FROM cases c
LEFT JOIN shipments s ON s.shipment_id = c.shipment_id"""),

        ("v_reshipment_chains", f"""
WITH chain AS (
    SELECT order_line_id, COUNT(*) AS shipments_in_chain, MIN(sequence) AS first_sequence,
           MAX(sequence) AS last_sequence, MIN(created_at) AS first_created_at
    FROM shipments GROUP BY order_line_id HAVING COUNT(*) > 1
)
SELECT ch.order_line_id, f.order_id, c.case_id, ch.shipments_in_chain,
       f.shipment_id AS first_shipment_id, l.shipment_id AS last_shipment_id,
       f.carrier AS first_carrier, l.carrier AS last_carrier,
       ch.first_created_at, l.created_at AS last_created_at,
       lo.delivered_at, lo.delivered, c.state AS case_state,
       {_flag("c.state = 'resolved'")} AS resolved,
       {d.days('ch.first_created_at', 'lo.delivered_at')} AS days_first_shipment_to_delivery
FROM chain ch
JOIN shipments f ON f.order_line_id = ch.order_line_id AND f.sequence = ch.first_sequence
JOIN shipments l ON l.order_line_id = ch.order_line_id AND l.sequence = ch.last_sequence
LEFT JOIN v_shipment_outcomes lo ON lo.shipment_id = l.shipment_id
LEFT JOIN cases c ON c.order_line_id = ch.order_line_id"""),

        ("v_messages", f"""
WITH ev AS (
    SELECT message_key,
           MIN(CASE WHEN event = 'delivered' THEN at END) AS delivered_at,
           MIN(CASE WHEN event = 'deferred' THEN at END) AS first_deferred_at,
           MIN(CASE WHEN event = 'bounce' THEN at END) AS bounced_at,
           MIN(CASE WHEN event = 'dropped' THEN at END) AS dropped_at,
           MIN(CASE WHEN event = 'open' THEN at END) AS opened_at,
           MIN(CASE WHEN event = 'click' THEN at END) AS clicked_at,
           MIN(CASE WHEN event IN ('unsubscribe', 'group_unsubscribe') THEN at END) AS unsubscribed_at,
           MIN(CASE WHEN event = 'spamreport' THEN at END) AS spam_reported_at,
           MAX(CASE WHEN event IN ('bounce', 'dropped') THEN reason END) AS failure_reason
    FROM message_events GROUP BY message_key
)
SELECT o.message_key, o.case_id, o.order_id, o.kind, o.state, o.planned_at, o.sent_at, o.send_at,
       {d.week('o.sent_at')} AS sent_week, {d.iso_week('o.sent_at')} AS sent_iso_week,
       ev.delivered_at, ev.first_deferred_at, ev.bounced_at, ev.dropped_at, ev.opened_at, ev.clicked_at,
       ev.unsubscribed_at, ev.spam_reported_at, ev.failure_reason,
       CASE WHEN o.state <> 'sent' THEN o.state
            WHEN ev.bounced_at IS NOT NULL THEN 'bounced'
            WHEN ev.dropped_at IS NOT NULL THEN 'dropped'
            WHEN ev.spam_reported_at IS NOT NULL THEN 'spam_report'
            WHEN ev.unsubscribed_at IS NOT NULL THEN 'unsubscribed'
            WHEN ev.opened_at IS NOT NULL OR ev.clicked_at IS NOT NULL THEN 'opened'
            WHEN ev.delivered_at IS NOT NULL THEN 'delivered'
            WHEN ev.first_deferred_at IS NOT NULL THEN 'deferred'
            ELSE 'sent' END AS delivery_status
FROM outbox o
LEFT JOIN ev ON ev.message_key = o.message_key"""),

        ("v_message_delivery", f"""
WITH m AS (
    SELECT kind, sent_week, sent_iso_week,
           {_flag('(delivered_at IS NOT NULL OR opened_at IS NOT NULL OR clicked_at IS NOT NULL '
                  'OR unsubscribed_at IS NOT NULL OR spam_reported_at IS NOT NULL) AND bounced_at IS NULL')}
               AS delivered,
           {_flag('bounced_at IS NOT NULL')} AS bounced, {_flag('dropped_at IS NOT NULL')} AS dropped,
           {_flag('opened_at IS NOT NULL OR clicked_at IS NOT NULL')} AS opened,
           {_flag('unsubscribed_at IS NOT NULL')} AS unsubscribed,
           {_flag('spam_reported_at IS NOT NULL')} AS spam_reported
    FROM v_messages WHERE state = 'sent'
)
SELECT kind, sent_week AS week, sent_iso_week AS iso_week, COUNT(*) AS sent,
       SUM(delivered) AS delivered, SUM(bounced) AS bounced, SUM(dropped) AS dropped,
       SUM(opened) AS opened, SUM(unsubscribed) AS unsubscribed, SUM(spam_reported) AS spam_reports,
       {_rate('SUM(delivered)', 'COUNT(*)')} AS delivery_rate,
       {_rate('SUM(bounced)', 'COUNT(*)')} AS bounce_rate,
       {_rate('SUM(opened)', 'SUM(delivered)')} AS open_rate,
       {_rate('SUM(unsubscribed)', 'SUM(delivered)')} AS unsubscribe_rate,
       {_rate('SUM(spam_reported)', 'SUM(delivered)')} AS spam_rate
FROM m GROUP BY kind, sent_week, sent_iso_week"""),

        ("v_runs", f"""
WITH steps AS (
    SELECT batch_key, MIN(as_of) AS as_of, COUNT(*) AS steps_recorded,
           MAX({_flag("step = 'send_messages'")}) AS complete,
           MAX(CASE WHEN step = 'load_orders' THEN {d.json_int('counts', 'orders')} END) AS orders_loaded,
           MAX(CASE WHEN step = 'load_orders' THEN {d.json_int('counts', 'quarantined')} END)
               AS orders_quarantined,
           SUM(CASE WHEN step LIKE 'fetch_tracking%' THEN {d.json_int('counts', 'scans_new')} END) AS scans_new,
           MAX(CASE WHEN step = 'detect_exceptions' THEN {d.json_int('counts', 'shipments_checked')} END)
               AS shipments_checked,
           MAX(CASE WHEN step = 'detect_exceptions' THEN {d.json_int('counts', 'detections')} END) AS detections,
           MAX(CASE WHEN step = 'compute_windows' THEN {d.json_int('counts', 'windows_given')} END)
               AS windows_given,
           MAX(CASE WHEN step = 'record_history' THEN {d.json_int('counts', 'cases_changed')} END)
               AS cases_changed,
           MAX(CASE WHEN step = 'plan_messages' THEN {d.json_int('counts', 'planned')} END) AS messages_planned,
           MAX(CASE WHEN step = 'send_messages' THEN {d.json_int('counts', 'sent')} END) AS messages_sent,
           MAX(CASE WHEN step = 'send_messages' THEN {d.json_int('counts', 'failed')} END) AS messages_failed,
           MAX(CASE WHEN step = 'send_messages' THEN {d.json_int('counts', 'ambiguous')} END) AS messages_ambiguous
    FROM run_steps GROUP BY batch_key
), feeds AS (
    SELECT batch_key, COUNT(*) AS feeds, SUM(CASE WHEN ok THEN 0 ELSE 1 END) AS feeds_down
    FROM feed_health GROUP BY batch_key
)
SELECT s.batch_key, s.as_of, {d.month('s.as_of')} AS month, {d.iso_week('s.as_of')} AS iso_week,
       s.steps_recorded, s.complete, COALESCE(f.feeds, 0) AS feeds, COALESCE(f.feeds_down, 0) AS feeds_down,
       s.orders_loaded, s.orders_quarantined, s.scans_new, s.shipments_checked, s.detections,
       s.windows_given, s.cases_changed, s.messages_planned, s.messages_sent, s.messages_failed,
       s.messages_ambiguous
FROM steps s
LEFT JOIN feeds f ON f.batch_key = s.batch_key"""),

        ("v_open_cases", f"""
WITH latest AS (
    SELECT MAX(as_of) AS as_of FROM run_steps
), told AS (
    SELECT case_id, MIN(sent_at) AS first_message_at, COUNT(*) AS messages_sent
    FROM outbox WHERE state = 'sent' GROUP BY case_id
)
SELECT c.case_id, c.order_line_id, c.order_id, s.carrier, s.service, c.exception_type, c.severity,
       c.state, c.owner, c.shipments_in_chain, c.first_evidence_at, c.opened_at,
       c.window_earliest, c.window_latest, t.first_message_at, COALESCE(t.messages_sent, 0) AS messages_sent,
       latest.as_of, {d.days('c.opened_at', 'latest.as_of')} AS age_days
FROM cases c
CROSS JOIN latest
LEFT JOIN shipments s ON s.shipment_id = c.shipment_id
LEFT JOIN told t ON t.case_id = c.case_id
WHERE c.state <> 'resolved'"""),
    ]


def _dialect() -> type[_SQLite] | type[_Postgres]:
    name = op.get_context().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"analyst views are written for SQLite and Postgres, not {name}")
    return _SQLite if name == "sqlite" else _Postgres


def upgrade() -> None:
    for name, body in views(_dialect()):
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    for name, _body in reversed(views(_dialect())):
        op.execute(f"DROP VIEW {name}")
