"""
### reconcile_outbox

Every day at 07:00 UTC (or triggered by hand): every e-mail that needs a person — **ambiguous**
(the request went out and no answer came back: it may have reached the customer) or **failed**
(the provider refused it) — becomes one question in Airflow's **Required Actions** page
(Human-in-the-loop). For each one a person chooses:

- **Resend** — the provider never got it: planned again; the next `delivery_exceptions` run sends it, once.
- **Mark sent** — the provider's activity log shows it was delivered: recorded as sent, never sent again.
- **Drop** — it must never go: recorded as dropped by that person, never sent.
- **Decide later** — nothing changes; the next day's run asks again. Taken by itself after 23 hours
  without an answer, so a run never blocks the next one.

Each answer is applied at once (one mapped `settle` group per message: `decide` → `apply`), through
the same rule as the command line `python -m lastmile outbox --resend/--mark-sent/--drop KEY`,
which stays. The case history (`case_events`) records what was done and who decided. A message
someone already settled another way is skipped. With nothing waiting, the run succeeds at once.

The questions show ids, kind, state and the last error's class only: never the customer's name,
address, subject or body. Look the message key up in the e-mail provider's activity log.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import dag, task, task_group

from lastmile_airflow.alerts import OpsAlert
from lastmile_airflow.reconcile import (
    LATER,
    OPTIONS,
    RESPONSE_TIMEOUT,
    apply_choice,
    messages_needing_a_person,
)

DEFAULT_ARGS = {
    "owner": "lastmile-ops",
    # Retries apply to transient failures only (lost connection, timeout, locked database, deadlock,
    # HTTP 429/5xx: lastmile.steps.errors.is_transient). lastmile_airflow.steps raises every other failure
    # (bad data, integrity/SQL errors, a missing setting) as AirflowFailException: failed at once, alerted.
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=2),
    "on_failure_callback": OpsAlert(),
}


@dag(
    dag_id="reconcile_outbox",
    schedule="0 7 * * *",
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lastmile", "customer-care", "ops"],
    doc_md=__doc__,
)
def reconcile_outbox() -> None:
    @task_group(group_id="settle")
    def settle(message: dict, subject: str, body: str) -> None:
        decide = HITLOperator(
            task_id="decide",
            subject=subject,
            body=body,
            options=OPTIONS,
            defaults=[LATER],
            response_timeout=RESPONSE_TIMEOUT,
            map_index_template="{{ task.subject.split(' ')[1] }}",  # the message key
        )
        task(apply_choice, task_id="apply", multiple_outputs=False,
             map_index_template="{{ message_key }}")(message, decide.output)

    settle.expand_kwargs(task(messages_needing_a_person, task_id="messages_needing_a_person")())


reconcile_outbox()
