"""Brand settings (sender, reply-to, owners, phone) loaded from include/lastmile/brand.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lastmile.core.policy import Policy

DEFAULT_PATH = Path(__file__).with_name("brand.toml")


@dataclass(frozen=True)
class Brand:
    name: str
    sender_email: str
    sender_name: str
    reply_to: str
    support_phone: str
    support_hours: str
    tracking_url: str
    owner_team: str
    escalation_owner: str
    goodwill_offer: str
    policy: Policy = field(default_factory=Policy)


def load_brand(path: Path = DEFAULT_PATH) -> Brand:
    """Read and check the brand file; a no-reply sender or reply-to is a configuration error."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    brand = Brand(**{**raw, "policy": Policy.from_dict(raw.get("policy", {}))})
    for field_name in ("sender_email", "reply_to"):
        value = getattr(brand, field_name).lower()
        if "noreply" in value.replace("-", "").replace("_", "") or "@" not in value:
            raise ValueError(f"{path}: {field_name} must be a monitored address, not {value!r}")
    return brand
