"""Canary routing: the share of a model's traffic its @challenger answers.

The setting lives in the registry as a tag of the registered model, so every API worker of
every replica reads the same one and it outlives restarts. It names the challenger version it
was set for: when @challenger moves (a new candidate) or becomes the champion, the canary stops
rather than send traffic to a version nobody chose.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION

TAG_CANARY = "canary"
MAX_SHARE = 0.5  # a canary is a minority of traffic; beyond that, promote


@dataclass(frozen=True, slots=True)
class Canary:
    """A share of traffic (0 < share <= MAX_SHARE) for one challenger version."""

    share: float
    version: str
    set_at: str

    def to_tag(self) -> str:
        """The registry tag's value."""
        return json.dumps({"share": self.share, "version": self.version, "set_at": self.set_at})

    @classmethod
    def from_tag(cls, text: str | None) -> Canary | None:
        """The canary a tag holds; None when absent or unreadable (no traffic moves then)."""
        if not text:
            return None
        try:
            data: Any = json.loads(text)
            share, version = float(data["share"]), str(data["version"])
        except (ValueError, TypeError, KeyError):
            return None
        if not 0.0 < share <= MAX_SHARE:
            return None
        return cls(share, version, str(data.get("set_at", "")))


def active(canary: Canary | None, aliases: dict[str, str]) -> Canary | None:
    """The canary when it still applies: its version is @challenger and not @champion."""
    if canary is None:
        return None
    challenger, champion = aliases.get(ALIAS_CHALLENGER), aliases.get(ALIAS_CHAMPION)
    if challenger != canary.version or champion == canary.version:
        return None
    return canary


def bucket(model: str, key: str) -> float:
    """A number in [0, 1) fixed by the routing key: a client lands on the same side in every
    worker and replica (a stable hash, not Python's per-process one)."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
