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

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import dag, task, task_group

from lastmile_airflow.dag_defaults import START_DATE, default_args
from lastmile_airflow.reconcile import (
    LATER,
    OPTIONS,
    RESPONSE_TIMEOUT,
    apply_choice,
    messages_needing_a_person,
)


@dag(
    dag_id="reconcile_outbox",
    schedule="0 7 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_minutes=2),
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
