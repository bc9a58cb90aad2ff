"""Steps: one module per DAG task, each "read the history → apply a rule → write the history".

The DAG, the CLI and the backtests call the same functions (`lastmile.steps.pipeline`). This file
only names the steps in DAG order: it stays light because DAG files import it at parse time.
"""

STEPS = ("load_orders", "fetch_tracking", "detect_exceptions", "compute_windows", "record_history",
         "plan_messages", "send_messages", "summarise")
