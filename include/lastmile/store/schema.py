"""The exception-history schema (SQLAlchemy Core): the same tables on SQLite and Postgres.

The database itself is created and upgraded by the Alembic migrations in `lastmile/migrations`;
a test compares this metadata with the migrated database, so a change here needs a migration
(docs/history-schema.md says how to add one).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
TS = DateTime(timezone=True)
# The shipment columns tracking_state keeps a copy of: what a poll asks a carrier by, and the two
# it filters on (created by then, the account it is read through).
TRACKED_COLUMNS = ("tracking_code", "carrier", "service", "origin", "destination", "created_at", "tracking_account")

customers = Table(
    "customers", metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text),  # NULL when missing or invalid; the reason is in quarantine
    Column("tz", String(64), nullable=False),
    Column("country", String(2), nullable=False),
    Column("locale", String(16), nullable=False),
)
subscriptions = Table(
    "subscriptions", metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("cadence", String(16), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("next_delivery_date", Date),
    Column("status", String(16), nullable=False),
)
orders = Table(
    "orders", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("placed_at", TS, nullable=False),
    Column("subscription_id", String(64)),
    Column("currency", String(3), nullable=False),
    Column("status", String(16)),  # open | cancelled | refunded (NULL: open)
)
order_lines = Table(
    "order_lines", metadata,
    Column("order_line_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("sku", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
)
shipments = Table(
    "shipments", metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("order_line_id", String(64), nullable=False, index=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("tracking_code", String(64), nullable=False, unique=True),
    Column("created_at", TS, nullable=False, index=True),
    Column("promised_date", Date, nullable=False),
    Column("origin", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("dest_tz", String(64), nullable=False, index=True),  # (queries.distinct_values walks it)
    Column("dest_country", String(2)),  # ISO 3166: whose weekend and holidays count (NULL: from dest_tz)
    Column("sequence", Integer, nullable=False),
    Column("replaces_shipment_id", String(64)),
    Column("tracking_account", String(64)),  # NULL: the first configured account
)
scans = Table(
    "scans", metadata,
    Column("scan_id", String(40), primary_key=True),
    Column("shipment_id", String(64), nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("utc_offset_minutes", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", String(64)),
    Column("carrier_status", String(64), nullable=False),
    Column("carrier_status_detail", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("city", String(128)),
    Column("country", String(2)),
    Column("raw", Text, nullable=False),
    Column("first_seen_at", TS, nullable=False, index=True),
    Index("ix_scans_occurred_at", "occurred_at"),
    Index("ix_scans_status_occurred", "status", "occurred_at", "shipment_id"),
    # A parcel's scans, and its first scan of a status by a time, found by the parcel: with only
    # the index above to go on, SQLite walks every delivered scan to find a hundred parcels'.
    Index("ix_scans_shipment_status_occurred", "shipment_id", "status", "occurred_at"),
)
estimates = Table(
    "estimates", metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("est_delivery_date", Date, primary_key=True),
    Column("observed_at", TS, nullable=False, index=True),  # the earliest run that saw this estimate
)
detections = Table(
    "detections", metadata,
    Column("batch_key", String(40), primary_key=True),
    Column("shipment_id", String(64), primary_key=True),
    Column("exception_type", String(32), primary_key=True),
    Column("order_line_id", String(64), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("open", Boolean, nullable=False),  # False: the shipment has since been delivered
    Column("first_evidence_at", TS, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("window_earliest", Date),
    Column("window_latest", Date),
    Column("window_basis", String(64)),
    # Every batch keeps its own rows: the analyst views look a shipment up across batches.
    Index("ix_detections_shipment_type", "shipment_id", "exception_type"),
)
cases = Table(
    "cases", metadata,
    Column("case_id", String(80), primary_key=True),
    Column("order_line_id", String(64), nullable=False, unique=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False),
    Column("shipment_id", String(64), nullable=False),
    Column("exception_type", String(32), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # open | told | escalated | resolved
    Column("resolution", String(32)),
    Column("shipments_in_chain", Integer, nullable=False),
    Column("opened_at", TS, nullable=False),
    Column("first_evidence_at", TS, nullable=False),
    Column("resolved_at", TS),
    Column("window_earliest", Date),
    Column("window_latest", Date),
    Column("window_basis", String(64)),
    Column("evidence", Text, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("last_batch", String(40), nullable=False, index=True),
    # the live cases, without the resolved ones; their keys too (read without touching a row)
    Index("ix_cases_state_type_case", "state", "exception_type", "case_id"),
)
case_events = Table(
    "case_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(80), nullable=False, index=True),
    Column("batch_key", String(40), nullable=False),
    Column("at", TS, nullable=False),
    Column("event", String(32), nullable=False),
    Column("detail", String(128), nullable=False),
    # Append-only per batch: a case may come back to a state it was in before (delivered,
    # reshipped, delivered again); a rerun of the same batch records nothing new.
    UniqueConstraint("case_id", "batch_key", "event", "detail", name="uq_case_event_batch"),
)
outbox = Table(
    "outbox", metadata,
    Column("message_key", String(160), primary_key=True),
    Column("case_id", String(80), nullable=False, index=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    # planned | sending | sent | failed | suppressed | ambiguous (may have reached the provider)
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("customer_id", String(64), nullable=False),
    Column("recipient", Text),
    Column("recipient_name", Text),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("window_earliest", Date),
    Column("window_latest", Date),
    Column("check_in_by", Date),  # a wide window's promise: we write again by this date, whatever happens
    Column("planned_at", TS, nullable=False),
    Column("planned_batch", String(40), nullable=False, index=True),
    Column("sent_at", TS),
    Column("send_at", TS),  # scheduled delivery (quiet hours); NULL: at once
    Column("handed_at", TS),  # when the last sending run claimed it for the provider
    Column("transport_ref", Text),
    Column("attempts", Integer, nullable=False, default=0),
    # what is still planned or sending; a case's sent ones, with the promises they made
    Index("ix_outbox_state_case_promise", "state", "case_id", "window_latest", "check_in_by"),
    Index("ix_outbox_state_kind", "state", "kind"),  # the sent messages counted by kind
    Index("ix_outbox_planned_at_key", "planned_at", "message_key"),  # the newest, in the outbox page's order
)
message_events = Table(
    "message_events", metadata,  # what the e-mail provider later said about a message we sent
    Column("provider_event_id", String(100), primary_key=True),  # SendGrid's sg_event_id: a redelivery is a no-op
    Column("message_key", String(160), nullable=False, index=True),  # the outbox key, sent as a custom arg
    # SendGrid's own event names: processed, delivered, deferred, dropped, bounce, open, click,
    # spamreport, unsubscribe, group_unsubscribe, group_resubscribe
    Column("event", String(32), nullable=False),
    Column("at", TS, nullable=False),
    Column("reason", Text),  # bounce/drop/deferral reason or bounce type; never the address
)
tracker_events = Table(
    "tracker_events", metadata,  # trackers a carrier pushed to us (EasyPost's tracker.updated webhook)
    Column("account", String(64), primary_key=True),  # the tracking account (Connection) it was pushed to
    Column("event_id", String(100), primary_key=True),  # the vendor's event id: a redelivery is a no-op
    Column("tracker_id", String(100), nullable=False),  # EasyPost's trk_...: one parcel's tracker
    Column("tracking_code", String(64), nullable=False),
    Column("received_at", TS, nullable=False),
    # The tracker's own updated_at (whole seconds; never after received_at): of two versions, the
    # newer wins, and of two as new, the one whose event EasyPost created later (its ms created_at).
    Column("tracker_updated_at", TS),
    Column("event_created_at", TS),
    Column("tracker", Text, nullable=False),  # the Tracker object as pushed (JSON), read like a polled one
    # An hour reads one account's pushes since its previous fetch: a range of this index.
    Index("ix_tracker_events_account_received", "account", "received_at"),
    # ...and skips a version older than one read before (a retried delivery arriving late).
    Index("ix_tracker_events_account_tracker", "account", "tracker_id", "tracker_updated_at"),
    # ...and, at the day's full fetch, finds the parcels with news that were never pushed.
    Index("ix_tracker_events_account_code", "account", "tracking_code"),
)
suppressions = Table(
    "suppressions", metadata,
    Column("email", Text, primary_key=True),  # lower-cased
    Column("kind", String(32), primary_key=True),  # bounces, blocks, spam_reports, unsubscribes, ...
    Column("created_at", TS),
    Column("reason", Text),
    Column("synced_at", TS, nullable=False),
)
quarantine = Table(
    "quarantine", metadata,  # every rejected record, once per place it was read from
    Column("source", String(32), primary_key=True),
    Column("record_id", String(128), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("file", String(255), primary_key=True),  # file or table; '' for an API
    Column("row_no", Integer, primary_key=True, autoincrement=False),  # 1-based data row; 0: not a file
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("first_batch", String(40), nullable=False),
    Column("first_seen_at", TS, nullable=False),
    Index("ix_quarantine_first_batch_source", "first_batch", "source"),  # a run's own rejects (summarise)
)
feed_health = Table(
    "feed_health", metadata,  # one row per carrier account per run
    Column("account", String(64), primary_key=True),
    Column("batch_key", String(40), primary_key=True),
    Column("vendor", String(16), nullable=False),
    Column("as_of", TS, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("shipments_asked", Integer, nullable=False),
    Column("trackers_received", Integer, nullable=False),
    Column("trackers_updated", Integer, nullable=False),  # trackers with at least one new scan
    Column("scans_new", Integer, nullable=False),
    Column("error", Text),  # the vendor's own message when the fetch failed; never a key
)
source_watermarks = Table(
    "source_watermarks", metadata,  # incremental order sources: how far each entity was read
    Column("source", String(32), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("watermark", TS, nullable=False),
    Column("batch_key", String(40), nullable=False),
)
run_steps = Table(
    "run_steps", metadata,
    Column("batch_key", String(40), primary_key=True),
    Column("step", String(96), primary_key=True),
    Column("as_of", TS, nullable=False),
    Column("counts", Text, nullable=False),
)
current_detections = Table(
    "current_detections", metadata,  # each shipment's exceptions as last computed; see detections
    Column("shipment_id", String(64), primary_key=True),
    Column("exception_type", String(32), primary_key=True),
    Column("order_line_id", String(64), nullable=False, index=True),
    Column("severity", Integer, nullable=False),
    Column("open", Boolean, nullable=False),
    Column("first_evidence_at", TS, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("window_earliest", Date),
    Column("window_latest", Date),
    Column("window_basis", String(64)),
    Column("batch_key", String(40), nullable=False),  # the batch that last computed it
    Index("ix_current_detections_batch_open", "batch_key", "open"),  # a batch's open detections (windows)
)
transit_samples = Table(
    "transit_samples", metadata,  # one per delivered parcel: acceptance to delivery, business days
    Column("shipment_id", String(64), primary_key=True),
    Column("carrier", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("origin", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("accepted_at", TS, nullable=False),
    Column("delivered_at", TS, nullable=False),
    Column("transit_bd", Integer, nullable=False),
    Column("max_gap_bd", Integer),  # the longest silence once moving (NULL: no two scans to measure)
    Column("pickup_wait_bd", Integer),  # label to the first acceptance scan
    Column("learned_at", TS),  # the run that first saw the delivery
    Index("ix_transit_samples_carrier_delivered", "carrier", "delivered_at"),
    Index("ix_transit_samples_carrier_learned", "carrier", "learned_at"),
)
estimate_samples = Table(
    "estimate_samples", metadata,  # one per carrier estimate of a delivered parcel: how far it missed
    Column("shipment_id", String(64), primary_key=True),
    Column("est_delivery_date", Date, primary_key=True),
    Column("carrier", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("revision", Boolean, nullable=False),
    Column("delivered_at", TS, nullable=False),
    Column("error_bd", Integer, nullable=False),
    Index("ix_estimate_samples_carrier_delivered", "carrier", "delivered_at"),
)
exception_samples = Table(
    "exception_samples", metadata,  # one per delivered parcel and exception: evidence to delivery
    Column("shipment_id", String(64), primary_key=True),
    Column("exception_type", String(32), primary_key=True),
    Column("carrier", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("origin", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("evidence_at", TS, nullable=False),
    Column("delivered_at", TS, nullable=False),
    Column("remaining_bd", Integer, nullable=False),
    Index("ix_exception_samples_type_carrier_delivered", "exception_type", "carrier", "delivered_at"),
    Index("ix_exception_samples_type_delivered", "exception_type", "delivered_at"),
)
batch_changes = Table(
    "batch_changes", metadata,  # the shipments a batch's load_orders wrote: detection looks again
    Column("batch_key", String(40), primary_key=True),
    Column("shipment_id", String(64), primary_key=True),
    # What the batch loaded for it (its row's and its order's content): the batch's load run again
    # with other content changes it, and the next detection looks again (detect_exceptions.arrived_with).
    Column("digest", String(40)),
)
tracking_state = Table(
    "tracking_state", metadata,  # one per shipment: when its first terminal scan happened (NULL: in flight)
    Column("shipment_id", String(64), primary_key=True),
    Column("finished_at", TS),
    # What a carrier is asked by, copied from `shipments` whenever load_orders writes one
    # (progress.track): a poll lists every parcel in flight from here, not by looking each one up
    # in `shipments` (NULL: a row no load wrote, never listed).
    *(Column(c.name, c.type) for c in shipments.c if c.name in TRACKED_COLUMNS),
    # The parcels in flight at an instant (finished_at first), and the poll's listing of them read
    # from the index alone (the rows are not visited).
    Index("ix_tracking_state_poll", "finished_at", "created_at", "tracking_account", "shipment_id",
          "tracking_code", "carrier", "service", "origin", "destination"),
)
learned_statistics = Table(
    # A derived cache: what the rules and windows learned from the samples above as of a cutoff (the
    # UTC midnight a destination's day learns by: core/calendar.learned_by), computed once and read
    # every hour after. Rows are forgotten when samples before their cutoff change; deleting any of
    # them only costs a recomputation.
    "learned_statistics", metadata,
    Column("kind", String(32), primary_key=True),  # thresholds, transit, estimate_errors, after_exception
    Column("version", String(16), primary_key=True),  # of the settings and code that computed it
    Column("cutoff", TS, primary_key=True),
    Column("computed_at", TS, nullable=False),  # the instant of the run that computed it
    Column("payload", Text, nullable=False),  # JSON
)
tally_deltas = Table(
    # Counts over the whole history (messages by state, cases by state, ...: store/tallies), kept by
    # triggers on the counted tables (migration 0015) as their rows change: a count is the sum of
    # its rows' n, and the rows of a key are folded into one now and then. Only ever inserted into
    # by the triggers: overlapping runs never wait on a count.
    "tally_deltas", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(48), nullable=False),
    Column("key", String(32), nullable=False),
    Column("n", Integer, nullable=False),
    Index("ix_tally_deltas_name_key", "name", "key", "n"),
)
source_rows = Table(
    "source_rows", metadata,  # a digest of each shop record as last accepted: unchanged rows are skipped
    Column("source", String(32), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("digest", String(40), nullable=False),
    Column("batch_key", String(40), nullable=False),
)
