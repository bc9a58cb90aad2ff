"""The pipeline's steps in DAG order, and `run_all` for running them in-process.

The DAG, the CLI (`python -m lastmile run`) and every replay or backtest call these same functions,
each of which lives in its own module under `lastmile.steps` and reads "read → rule → write".
Data moves between steps through the history database, keyed by the run's batch key (its `as_of`),
so every step can be rerun on its own and a rerun of the same instant changes nothing.

Importing this module loads the code every step runs (pandas, SQLAlchemy, the rules), and then
freezes every object the process holds (gc.freeze): in a step's process, about 100,000 that live
as long as it does. Python's full garbage collections then walk only what the run itself
allocates, not all of those again each time the run's allocations trigger one. (A frozen object
still goes when nothing refers to it; only a cycle that was already garbage at the freeze stays,
once: a few hundred objects in a process that ran a DAG before.) Only processes that run steps
import this module: Airflow's task processes, the CLI, the backtests; the scheduler, the DAG
processor, the API server and the triggerer never do (tests/integration/test_change_follows_cost.py).
Measured on a quiet hour over 100k shipments of history (SQLite): a full collection took 0.037 s
of its 0.41 s before; frozen, the hour's collections take 0.01 s in all (docs/benchmark.md).
"""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any

from lastmile.carriers.accounts import account_from_env
from lastmile.config import Settings
from lastmile.steps import STEPS
from lastmile.steps.compute_windows import compute_windows
from lastmile.steps.detect_exceptions import detect_exceptions
from lastmile.steps.fetch_tracking import FeedDown, fetch_tracking, tracking_accounts
from lastmile.steps.load_orders import load_orders
from lastmile.steps.outbox import reconcile
from lastmile.steps.plan_messages import plan_messages
from lastmile.steps.record_history import record_history
from lastmile.steps.send_messages import send_messages
from lastmile.steps.summarise import summarise

__all__ = ["STEPS", "FeedDown", "compute_windows", "detect_exceptions", "fetch_tracking", "load_orders",
           "plan_messages", "reconcile", "record_history", "run_all", "send_messages", "summarise",
           "tracking_accounts"]

gc.freeze()


def run_all(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Every step in DAG order, in-process: for the backtest and tests; the DAG calls them one by one."""
    result: dict[str, Any] = {}
    for step in STEPS:
        if step != "fetch_tracking":
            result = globals()[step](settings, as_of)
            continue
        for name in tracking_accounts(settings):
            try:
                fetch_tracking(settings, as_of, account_from_env(name))
            except FeedDown:
                pass  # logged and recorded in feed_health; the other accounts go on, as in the DAG
    return result
