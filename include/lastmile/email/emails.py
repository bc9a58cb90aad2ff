"""Render customer e-mails (HTML, autoescaped, plus plain text) from Jinja2 templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")

# What happened, in plain words: lost is "lost", a third shipment is "the third time" (PRINCIPLES 4).
HEADLINES = {
    "late": "Your order is running late",
    "stalled": "Your parcel has stopped moving",
    "lost": "Your parcel is lost",
    "failed_attempt": "We couldn't deliver your parcel",
    "address_problem": "The carrier can't find your address",
    "customs_hold": "Your parcel is held at customs",
    "returned": "Your parcel is coming back to us",
    "damaged": "Your parcel was damaged",
    "stuck_before_pickup": "Your parcel hasn't left our warehouse",
    "reshipped": "We've sent your order again",
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_date"] = local_date
    return env


def local_date(day: date | None, locale: str = "en_US") -> str:
    """A date the way the customer writes it: 'Tue, Nov 24' in the US, 'Tue 24 Nov' elsewhere."""
    if day is None:
        return ""
    if locale == "en_US":
        return f"{day:%a}, {day:%b} {day.day}"
    return f"{day:%a} {day.day} {day:%b}"


def subject_for(kind: str, context: dict[str, Any]) -> str:
    order = context["order_id"]
    if kind == "resolved":
        return f"Your order {order} has arrived — thank you for your patience"
    if kind == "update":
        what = "is out for delivery" if context.get("update") == "out_for_delivery" else "is moving again"
        return f"Good news: your order {order} {what}"
    if kind == "check_in":
        return f"An update on your order {order}, as promised"
    if kind == "escalated":
        return f"Your order {order}: {context['owner']} is now looking after it personally"
    if context["exception_type"] == "reshipped" and context["shipments_in_chain"] >= 3:
        return f"Your order {order}: we've sent it for the third time, and we're sorry"
    return f"{HEADLINES[context['exception_type']]} — order {order}"


def render(kind: str, context: dict[str, Any]) -> Rendered:
    """Subject, text and HTML for one message kind ('notice', 'update', 'check_in', 'escalated', 'resolved')."""
    ctx = {**context, "kind": kind, "headline": HEADLINES.get(context["exception_type"], "")}
    env = _env()
    # The shared copy is rendered as plain text once; HTML templates then escape it like any data,
    # so a carrier message or a name can never become markup.
    ctx["what_happened"] = " ".join(env.get_template("_what_happened.txt").render(ctx).split())
    steps = env.get_template("_next_steps.txt").render(ctx)
    ctx["next_steps"] = [" ".join(p.split()) for p in steps.splitlines() if p.strip()]
    subject = " ".join(subject_for(kind, ctx).split())  # one line, whatever the data held
    ctx["subject_line"] = subject
    return Rendered(subject, env.get_template(f"{kind}.txt").render(ctx),
                    env.get_template(f"{kind}.html").render(ctx))
