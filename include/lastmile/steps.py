"""The pipeline's step names in DAG order. Light on purpose: DAG files import it at parse time."""

STEPS = ("load_orders", "fetch_tracking", "detect_exceptions", "compute_windows", "record_history",
         "plan_messages", "send_messages", "summarise")
