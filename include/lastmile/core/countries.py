"""Country codes: carriers, vendors and shops name countries in ISO 3166-1 alpha-2, alpha-3 or in English.

Our tables store alpha-2 (`scans.country`, `customers.country`). The list of countries is
pycountry's (the Debian iso-codes data, ISO 3166-1), so there is one maintained home for it.
"""

from __future__ import annotations

from functools import lru_cache

import pycountry


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """Case-folded alpha-2, alpha-3 and English names (short, official, common) -> alpha-2."""
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if name:
                index.setdefault(name.casefold(), country.alpha_2)
    for country in pycountry.countries:  # codes win over a name that happens to spell a code
        index[country.alpha_3.casefold()] = country.alpha_2
        index[country.alpha_2.casefold()] = country.alpha_2
    return index


@lru_cache(maxsize=1024)
def alpha2(code: str | None) -> str | None:
    """The alpha-2 code of a country given as alpha-2, alpha-3 or English name; None when it is none of them.

    `GE` is Georgia and `Germany` is DE: nothing is guessed from the first letters.
    """
    text = " ".join((code or "").split()).casefold()
    return _index().get(text) if text else None
