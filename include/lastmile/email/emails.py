"""Render customer e-mails (HTML, autoescaped, plus plain text) from Jinja2 templates, in the
customer's language.

Every customer-facing sentence is a gettext message: in the templates (`{% trans %}` blocks of
Jinja's i18n extension with newstyle gettext, so variables are still escaped in the HTML part) and
here (subjects, headlines, the owners' titles, the support hours). The catalogs live in
`locale/` (docs/translations.md); `locales` decides which one a customer gets and formats dates
and numbers in the customer's locale with Babel.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_interval, get_day_names, get_timezone_name
from jinja2 import (
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.bccache import Bucket, BytecodeCache
from jinja2.runtime import Context

from lastmile.core.brand import Brand
from lastmile.email.locales import SOURCE, customer_locale, format_day, format_share, translations

TEMPLATES = Path(__file__).with_name("templates")

Gettext = Callable[[str], str]


def N_(message: str) -> str:
    """Mark a message for the catalog (pybabel extract); it is translated where it is used."""
    return message


# What happened, in plain words: lost is "lost", a third shipment is "the third time" (PRINCIPLES 4).
# Each is the first notice's heading and, with the order number, its subject.
HEADLINES = {
    # Translators: headline and subject of the first notice, exception "late": the promised date has passed.
    "late": N_("Your order is running late"),
    # Translators: headline and subject of the first notice, exception "stalled": no carrier scan for days.
    "stalled": N_("Your parcel has stopped moving"),
    # Translators: headline and subject of the first notice, exception "lost": say "lost" plainly.
    "lost": N_("Your parcel is lost"),
    # Translators: headline and subject of the first notice, exception "failed_attempt": the carrier could not hand it over.
    "failed_attempt": N_("We couldn't deliver your parcel"),
    # Translators: headline and subject of the first notice, exception "address_problem". Never blame the customer.
    "address_problem": N_("The carrier can't find your address"),
    # Translators: headline and subject of the first notice, exception "customs_hold": waiting for customs clearance.
    "customs_hold": N_("Your parcel is held at customs"),
    # Translators: headline and subject of the first notice, exception "returned": the carrier is sending it back to the shop.
    "returned": N_("Your parcel is coming back to us"),
    # Translators: headline and subject of the first notice, exception "damaged".
    "damaged": N_("Your parcel was damaged"),
    # Translators: headline and subject of the first notice, exception "stuck_before_pickup": labelled, never collected from our warehouse.
    "stuck_before_pickup": N_("Your parcel hasn't left our warehouse"),
    # Translators: headline and subject of the first notice, exception "reshipped": a new parcel replaces one that did not arrive.
    "reshipped": N_("We've sent your order again"),
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    language: str = SOURCE  # the catalog it was written from ("de", "pt_BR")


@pass_context
def _local_date(context: Context, day: date | None) -> str:
    """`{{ day | local_date }}`: a day the way this customer writes it (their locale, via Babel)."""
    return format_day(day, context["date_locale"])


_OPTIONS = {"trim_blocks": True, "lstrip_blocks": True, "extensions": ["jinja2.ext.i18n"]}


class _CompiledTemplates(FileSystemBytecodeCache):
    """Compiled templates kept on disk between processes (Jinja's own bytecode cache, in a private
    per-user temporary directory; a template whose source changed is compiled again): every
    plan_messages task is a new process, and compiling the templates an hour's e-mails use cost it
    more than rendering them (8 templates, 67 ms). The options are in the file names (other
    options, other files). A cache that cannot be read or written is no cache: never an error."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 -- a file cut short or from elsewhere: compile as if none
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


@cache
def _compiled_templates() -> BytecodeCache | None:
    try:
        return _CompiledTemplates(pattern="lastmile-%s-" + hashlib.sha256(
            repr(sorted(_OPTIONS.items())).encode()).hexdigest()[:12] + ".cache")
    except (OSError, RuntimeError):  # no private temporary directory to be had: compile every time
        return None


@cache
def _env(language: str) -> Environment:
    """One environment per catalog: templates compiled once per language, each with its gettext."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        bytecode_cache=_compiled_templates(),
        **_OPTIONS,  # type: ignore[arg-type]
    )
    env.policies["ext.i18n.trimmed"] = True  # a {% trans %} block's line breaks are not in its msgid
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["local_date"] = _local_date
    return env


def sender_label(brand: Brand, language: str) -> str:
    """The From line's display name in a catalog's language (brand.sender_name in English)."""
    _ = translations(customer_locale(language).language).gettext
    # Translators: the sender's name in the From line of every e-mail; %(shop)s is the shop's name (e.g. "Northwind Coffee").
    return _("%(shop)s Care Team") % {"shop": brand.name}


def owner_label(owner: str, brand: Brand, _: Gettext) -> str:
    """Who owns the case, as the customer reads it: the brand's owners with their titles in the
    customer's language (brand.owner_team / escalation_owner are the same in English); any other
    owner (a person named by ops) as written."""
    if owner == brand.owner_team:
        # Translators: who looks after a case while the care team has it: a first name (e.g. "Maya"), in every e-mail and signature.
        return _("%(name)s from our Care Team") % {"name": brand.care_team_member}
    if owner == brand.escalation_owner:
        # Translators: the named person an escalated case goes to, with their job title (e.g. "Daniel Okafor (Delivery Care Lead)").
        return _("%(name)s (Delivery Care Lead)") % {"name": brand.escalation_lead}
    return owner


def _twelve_hour(locale: str) -> bool:
    pattern = Locale.parse(locale).time_formats["short"].pattern
    return any(c in "hK" for c in re.sub(r"'[^']*'", "", pattern))


def support_hours(brand: Brand, locale: str, _: Gettext) -> str:
    """When the phone is answered, in the customer's style: "Mon–Fri, 8:00 AM – 6:00 PM Eastern Time"
    (en_US), "Mo.–Fr., 08:00–18:00 Uhr, Nordamerikanische Ostküstenzeit" (de)."""
    days = get_day_names("abbreviated", locale=locale)
    first, last = brand.support_days
    hours = format_interval(brand.support_opens, brand.support_closes, "hm" if _twelve_hour(locale) else "Hm",
                            locale=locale)
    zone = get_timezone_name(ZoneInfo(brand.support_tz), "long", locale=locale, zone_variant="generic")
    # Translators: the support phone's hours, in brackets after the number in every e-mail: first and last weekday (abbreviated, e.g. "Mon", "Fri"), the opening hours (e.g. "8:00 AM – 6:00 PM") and the time zone they are in (e.g. "Eastern Time").
    return _("%(first_day)s–%(last_day)s, %(hours)s %(zone)s") % {
        "first_day": days[first - 1], "last_day": days[last - 1], "hours": hours, "zone": zone}


def subject_for(kind: str, context: dict[str, Any], _: Gettext = N_) -> str:
    """The subject line; `context` as render builds it (the owner already in the customer's words)."""
    order = {"order_id": context["order_id"]}
    if kind == "resolved":
        # Translators: subject of the resolution e-mail: a delayed parcel has been delivered.
        return _("Your order %(order_id)s has arrived — thank you for your patience") % order
    if kind == "update":
        if context.get("update") == "out_for_delivery":
            # Translators: subject of the follow-up e-mail: a delayed parcel is out for delivery today.
            return _("Good news: your order %(order_id)s is out for delivery") % order
        # Translators: subject of the follow-up e-mail: a parcel that had stopped moving is moving again.
        return _("Good news: your order %(order_id)s is moving again") % order
    if kind == "check_in":
        # Translators: subject of the check-in e-mail we promised to send by a date when the window was wide.
        return _("An update on your order %(order_id)s, as promised") % order
    if kind == "escalated":
        # Translators: subject of the escalation e-mail (the window we gave has passed); %(owner)s is e.g. "Daniel Okafor (Delivery Care Lead)".
        return _("Your order %(order_id)s: %(owner)s is now looking after it personally") % {
            **order, "owner": context["owner"]}
    if context["exception_type"] == "reshipped" and context["shipments_in_chain"] >= 3:
        # Translators: subject of the notice when the same order ships for the third time: say "the third time" plainly.
        return _("Your order %(order_id)s: we've sent it for the third time, and we're sorry") % order
    # Translators: subject of a first notice: %(headline)s is the notice's headline (e.g. "Your order is running late"), then our order number.
    return _("%(headline)s — order %(order_id)s") % {**order, "headline": context["headline"]}


def render(kind: str, context: dict[str, Any]) -> Rendered:
    """Subject, text and HTML for one message kind ('notice', 'update', 'check_in', 'escalated',
    'resolved'), in the language of `context["locale"]` (the customer's)."""
    chosen = customer_locale(context.get("locale"))
    _ = translations(chosen.language).gettext
    brand = context["brand"]
    headline = HEADLINES.get(context["exception_type"])
    ctx = {**context, "kind": kind, "html_lang": chosen.html_lang, "date_locale": chosen.formats,
           "headline": _(headline) if headline else "",
           "owner": owner_label(context["owner"], brand, _),
           "support_hours": support_hours(brand, chosen.formats, _),
           "goodwill_credit": format_share(brand.goodwill_credit_percent / 100, chosen.formats)}
    env = _env(chosen.language)
    # The shared copy is rendered as plain text once; HTML templates then escape it like any data,
    # so a carrier message or a name can never become markup.
    ctx["what_happened"] = " ".join(env.get_template("_what_happened.txt").render(ctx).split())
    steps = env.get_template("_next_steps.txt").render(ctx)
    ctx["next_steps"] = [" ".join(p.split()) for p in steps.splitlines() if p.strip()]
    subject = " ".join(subject_for(kind, ctx, _).split())  # one line, whatever the data held
    ctx["subject_line"] = subject
    return Rendered(subject, env.get_template(f"{kind}.txt").render(ctx),
                    env.get_template(f"{kind}.html").render(ctx), chosen.language)
