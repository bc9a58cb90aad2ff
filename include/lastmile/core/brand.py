"""Brand settings (sender, reply-to, owners, phone and hours) loaded from include/lastmile/core/brand.toml.

Names, numbers and hours live here; every customer-facing sentence around them lives in the
e-mail catalog (lastmile.email), so each customer reads them in their own language.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lastmile.core.policy import Policy

DEFAULT_PATH = Path(__file__).with_name("brand.toml")


@dataclass(frozen=True)
class Brand:
    name: str
    sender_email: str
    reply_to: str
    support_phone: str
    support_days: tuple[int, int]  # first and last ISO weekday the phone is answered (1 = Monday)
    support_opens: time
    support_closes: time
    support_tz: str
    tracking_url: str
    care_team_member: str  # the first name a case is signed with while the team owns it
    escalation_lead: str  # the person an escalated case goes to
    goodwill_credit_percent: int
    goodwill_code: str
    policy: Policy = field(default_factory=Policy)

    # The sender's display name and the owners as the history stores them (cases.owner) and ops read
    # them. E-mails say the same in the customer's language (lastmile.email.emails.sender_label and
    # owner_label: the same English as their msgids).
    @property
    def sender_name(self) -> str:
        return f"{self.name} Care Team"

    @property
    def owner_team(self) -> str:
        return f"{self.care_team_member} from our Care Team"

    @property
    def escalation_owner(self) -> str:
        return f"{self.escalation_lead} (Delivery Care Lead)"


def load_brand(path: Path = DEFAULT_PATH) -> Brand:
    """Read and check the brand file; a no-reply sender or reply-to is a configuration error."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        first, last = (int(d) for d in raw.get("support_days", ()))
        hours = {k: time.fromisoformat(str(raw[k])) for k in ("support_opens", "support_closes")}
        ZoneInfo(str(raw["support_tz"]))
    except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError) as err:
        raise ValueError(f"{path}: support_days (two ISO weekdays), support_opens, support_closes (HH:MM) "
                         f"and support_tz (an IANA zone) say when the phone is answered ({err!r})") from None
    if not (1 <= first <= last <= 7) or hours["support_opens"] >= hours["support_closes"]:
        raise ValueError(f"{path}: support hours must run forward (days {first}-{last}, "
                         f"{hours['support_opens']}-{hours['support_closes']})")
    brand = Brand(**{**raw, **hours, "support_days": (first, last),
                     "policy": Policy.from_dict(raw.get("policy", {}))})
    for field_name in ("sender_email", "reply_to"):
        value = getattr(brand, field_name).lower()
        if "noreply" in value.replace("-", "").replace("_", "") or "@" not in value:
            raise ValueError(f"{path}: {field_name} must be a monitored address, not {value!r}")
    return brand
