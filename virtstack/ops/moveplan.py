"""How the plan words a VM moved to another host (virtstack.provider.moves). PURE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def host_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an object's host (its libvirt URI) changes."""
    return bool(old.get("uri")) and bool(new.get("uri")) and old.get("uri") != new.get("uri")


def move_words(old: Mapping[str, Any], new: Mapping[str, Any], disk_bytes: int) -> str:
    """`move a → b (stops for about N s, disks kept)` for a domain whose host changes."""
    before, after = old.get("host") or old.get("uri"), new.get("host") or new.get("uri")
    return f"move {before} → {after} (stops for about {downtime_seconds(disk_bytes)} s, disks kept)"


def disk_move_words(new: Mapping[str, Any]) -> str:
    return f"copied to host {new.get('host') or new.get('uri')} through libvirt streams, then removed here"


def downtime_seconds(disk_bytes: int, shutdown_seconds: float = 10.0, bytes_per_second: float = 100e6) -> int:
    """A rough figure for how long a moved VM is stopped: its shutdown, then its disks copied."""
    return max(1, round(shutdown_seconds + disk_bytes / bytes_per_second))
