"""The reconcile_outbox DAG's tasks: list what needs a person, ask them in the Airflow UI, apply the answer.

The rule itself (what "resend", "mark sent" and "drop" do to the outbox and the case history) is
the domain's `lastmile.steps.outbox.reconcile`, which the CLI calls too. What leaves this module
(XCom, the prompt, a log line) carries ids, kinds, states and error classes only: never a
customer's name, address, subject or body.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from lastmile_airflow.steps import _settings, classified

log = logging.getLogger(__name__)

RESEND, MARK_SENT, DROP, LATER = "Resend", "Mark sent", "Drop", "Decide later"
OPTIONS = [RESEND, MARK_SENT, DROP, LATER]
# the person's choice -> `reconcile`'s keyword for it ("Decide later" changes nothing)
CHOICES = {RESEND: "resend", MARK_SENT: "mark_sent", DROP: "drop"}
# Unanswered for this long, a prompt takes its default (LATER): the run ends before the next day's
# run, which asks again about whatever is still waiting.
RESPONSE_TIMEOUT = timedelta(hours=23)
# Prompts per run: far below Airflow's max_map_length (1024), and more than a person answers in a day.
MAX_PROMPTS = 200

_STATE_MEANS = {
    "ambiguous": "may have reached the provider: the request went out and no answer came back",
    "failed": "the provider refused it",
}


def messages_needing_a_person() -> list[dict[str, Any]]:
    """The oldest ambiguous or failed messages (at most MAX_PROMPTS), one prompt each: their safe
    facts and the prompt's words. More than that waiting is an outage, not a to-do list: the rest
    come in later runs, and the log says how many."""
    with classified("reconcile_outbox.list"):
        from lastmile.steps.outbox import waiting_for_a_person

        waiting = waiting_for_a_person(_settings(), limit=MAX_PROMPTS + 1)
    more = len(waiting) > MAX_PROMPTS
    waiting = waiting[:MAX_PROMPTS]
    log.info("lastmile reconcile_outbox: %s message(s) need a person%s", f"over {MAX_PROMPTS}" if more
             else len(waiting), "" if waiting else "; nothing to decide")
    if more:
        log.warning("lastmile reconcile_outbox: asking about the oldest %d only; the rest come in later runs "
                    "(so many at once usually means the provider refuses every message: check it first)",
                    MAX_PROMPTS)
    return [{"message": m, "subject": subject(m), "body": body(m)} for m in waiting]


def subject(message: dict[str, Any]) -> str:
    return f"E-mail {message['message_key']} ({message['kind']}) is {message['state']}: resend, mark sent or drop?"


def body(message: dict[str, Any]) -> str:
    """The prompt's Markdown: the facts to look the message up in the provider's activity log, and
    what each answer does."""
    error = (message.get("last_error") or "none recorded").replace("`", "'")
    return "\n".join([
        f"**Message** `{message['message_key']}`  ",
        f"**Kind** {message['kind']} · **Case** `{message['case_id']}` · **Order** `{message['order_id']}`  ",
        f"**State** {message['state']}: {_STATE_MEANS.get(message['state'], message['state'])}  ",
        f"**Last error** `{error}`  ",
        f"**Planned** {message['planned_at']} · **Attempts** {message['attempts']}",
        "",
        "Look the message key up in the e-mail provider's activity log (it rides on every message), then:",
        "",
        f"- **{RESEND}**: the provider never got it. It is planned again and the next delivery_exceptions "
        "run sends it, once.",
        f"- **{MARK_SENT}**: the provider did deliver it. It is recorded as sent and never sent again.",
        f"- **{DROP}**: it must never go. It is recorded as dropped by you and never sent.",
        f"- **{LATER}**: change nothing; tomorrow's run asks again. Taken by itself when nobody answers "
        f"within {int(RESPONSE_TIMEOUT.total_seconds() // 3600)} hours.",
    ])


def apply_choice(message: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Apply one person's answer to one message through the domain's `reconcile`.

    A message someone already settled another way (the CLI, an earlier run) is skipped, not failed.
    """
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    from lastmile.steps.outbox import NotWaiting, reconcile

    key = message["message_key"]
    get_current_context()["message_key"] = key  # names the map index in the UI
    (chosen,) = decision["chosen_options"]
    user = decision.get("responded_by_user") or {}
    by = f"{user.get('name') or user.get('id')} (Airflow)" if user else "nobody: the prompt timed out (Airflow)"
    if chosen == LATER:
        log.info("lastmile reconcile_outbox %s: left for later by %s", key, by)
        return {"message_key": key, "choice": LATER, "by": by, "state": message["state"]}
    step = f"reconcile_outbox.apply[{key}]"
    with classified(step):
        try:
            reconcile(_settings(), **{CHOICES[chosen]: key}, by=by)
        except NotWaiting:
            raise AirflowSkipException(f"{key} is no longer ambiguous or failed: someone settled it already") \
                from None
    return {"message_key": key, "choice": chosen, "by": by}
