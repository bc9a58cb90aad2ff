"""The customer's language: the one place a shop's locale string is read.

`customer_locale("de_AT")` says which catalog an e-mail is written from (`de`), which locale its
dates and numbers are formatted in (`de_AT`: Babel knows Austria) and whether that was a fallback.

- The catalogs (`SUPPORTED`) are English (the source), German, French, Spanish, Dutch and
  Brazilian Portuguese. Each is written for the locales in `HOME`; a customer there gets their own
  language and nothing is counted.
- Another locale of a language we write gets that language and is counted as a fallback:
  `de_AT → de`, `en_AU → en`, `fr_CA → fr`, and `pt_PT → pt_BR` (our only Portuguese is Brazilian:
  a Portuguese reader understands it, and it is better than English). Dates and numbers still
  follow the customer's own locale when Babel knows it (Austrian dates for de_AT).
- Anything else (a language we do not write, `xx_YY`, an empty or malformed value) gets English
  with English dates, counted as `xx_YY → en`.

Translations are gettext catalogs (`locale/<lang>/LC_MESSAGES/messages.po`, docs/translations.md).
A compiled `.mo` is a build artefact (scripts/env.sh compiles it): it is used when it is at least
as new as its `.po`; otherwise the `.po` is compiled in memory, so a fresh clone or a read-only
mount of the code reads the current wording either way.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError, negotiate_locale
from babel.dates import format_date, format_skeleton
from babel.messages import mofile, pofile
from babel.numbers import format_currency, format_percent
from babel.support import NullTranslations, Translations

log = logging.getLogger("lastmile")

SOURCE = "en"  # the language the templates are written in (the msgids)
SUPPORTED = ("en", "de", "fr", "es", "nl", "pt_BR")
# The locales each catalog is written for: no fallback is counted for these.
HOME = {
    "en": ("en", "en_US", "en_GB"),
    "de": ("de", "de_DE"),
    "fr": ("fr", "fr_FR"),
    "es": ("es", "es_ES"),
    "nl": ("nl", "nl_NL"),
    "pt_BR": ("pt_BR",),
}
# A language whose only catalog is a regional one.
_ALIASES = {"pt": "pt_BR"}
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"
# How a day is written in running text ("between Tue, Nov 24 and Fri, Nov 27"). English: a CLDR
# skeleton, which Babel turns into each English locale's own order ("Tue, Nov 24" in the US, "Tue 24
# Nov" in Britain), with the short month its e-mails always had. The other languages write the
# weekday and month out, in their own order, as their readers expect a date in a sentence
# ("Dienstag, 24. November", "mardi 24 novembre", "martes, 24 de noviembre", "dinsdag 24 november",
# "terça-feira, 24 de novembro"): each locale's full date without the year (Babel still applies the
# customer's own locale: "Jänner" in Austria). A new language adds its pattern here.
DAY_SKELETON = {"en": "MMMEd"}
DAY_PATTERN = {"de": "EEEE, d. MMMM", "fr": "EEEE d MMMM", "es": "EEEE, d 'de' MMMM", "nl": "EEEE d MMMM",
               "pt_BR": "EEEE, d 'de' MMMM"}
DEFAULT_DAY_SKELETON = "MMMMEd"


@dataclass(frozen=True)
class CustomerLocale:
    requested: str  # as the shop gave it, normalised ("de_AT"; "" when it gave none)
    language: str  # the catalog the e-mail is written from: one of SUPPORTED
    formats: str  # the Babel locale dates and numbers are written in ("de_AT", "en_GB", "en")
    fell_back: bool  # the customer's locale is not one a catalog is written for

    @property
    def html_lang(self) -> str:
        """The language as an HTML lang attribute / BCP 47 tag: "de", "pt-BR"."""
        return self.language.replace("_", "-")

    @property
    def fallback(self) -> str | None:
        """How ops read a fallback in the run summary: "de_AT → de", "xx_YY → en"."""
        return f"{self.requested or '(none)'} → {self.language}" if self.fell_back else None


def _normalise(value: object) -> str:
    """"de-AT", "de_AT.UTF-8", "de_AT@euro" → "de_AT"; anything not a string → ""."""
    if not isinstance(value, str):
        return ""
    return value.strip().split(".")[0].split("@")[0].replace("-", "_")


def _parse(tag: str) -> Locale | None:
    for candidate in (tag, tag.split("_")[0]):  # "de_XX": German, with German formats
        try:
            return Locale.parse(candidate) if candidate else None
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return None


@lru_cache(maxsize=1024)
def customer_locale(value: str | None) -> CustomerLocale:
    """The catalog, the formatting locale and whether it fell back, for a customer's locale string."""
    requested = _normalise(value)
    parsed = _parse(requested)
    if parsed is None:
        return CustomerLocale(requested, SOURCE, SOURCE, fell_back=True)
    tag = str(parsed)
    found = negotiate_locale([tag, parsed.language], SUPPORTED, aliases=_ALIASES)
    if found is None:  # a language we do not write: English, written the English way
        return CustomerLocale(requested, SOURCE, SOURCE, fell_back=True)
    language = next(s for s in SUPPORTED if s.lower() == found.lower())
    return CustomerLocale(requested, language, tag, fell_back=tag not in HOME[language])


def resolve(value: str | None) -> tuple[str, bool]:
    """(the catalog an e-mail to this locale is written from, whether that was a fallback)."""
    chosen = customer_locale(value)
    return chosen.language, chosen.fell_back


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> NullTranslations:
    """The gettext translations for a catalog: the compiled .mo when current, else the .po
    compiled in memory (fuzzy entries left out, as `pybabel compile` does). English: the msgids."""
    po = catalog_path(language)
    if language == SOURCE or not po.exists():
        return NullTranslations()
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fp:
            return Translations(fp, domain=DOMAIN)
    with po.open("rb") as fp:
        catalog = pofile.read_po(fp, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    mofile.write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    log.debug("e-mail catalog %s compiled in memory (no current %s)", po, mo.name)
    return Translations(buffer, domain=DOMAIN)


def format_day(day: date | None, locale: str) -> str:
    """A day as the customer writes it in a sentence: "Tue, Nov 24" (en_US), "Tue 24 Nov" (en_GB),
    "Dienstag, 24. November" (de), "mardi 24 novembre" (fr), "terça-feira, 24 de novembro" (pt_BR)."""
    if day is None:
        return ""
    language = customer_locale(locale).language
    if language in DAY_PATTERN:
        return format_date(day, DAY_PATTERN[language], locale=locale)
    return format_skeleton(DAY_SKELETON.get(language, DEFAULT_DAY_SKELETON), day, locale=locale)


def format_share(share: float, locale: str) -> str:
    """A percentage in the customer's style: 0.2 → "20%" (en), "20 %" (de, fr)."""
    return format_percent(share, locale=locale)


def format_money(amount: float, currency: str, locale: str) -> str:
    """An amount in the customer's style: "€12.50" (en), "12,50 €" (de), "R$ 12,50" (pt_BR)."""
    return format_currency(amount, currency, locale=locale)

