"""Colours of the physical picture's kinds: owners in strong hues, firmware memory types in
greys and muted tints (they are the background the kernel's memory sits in)."""

from __future__ import annotations

OWNERS = {
    "free": ("#dcefd8", "#59a14f"),
    "page-table": ("#fde6cf", "#e8862a"),
    "heap-backing": ("#ecdff1", "#a06cb0"),
    "user-pages": ("#d9ecf2", "#2a9d8f"),
    "kernel-mapped": ("#dbe7f3", "#4e79a7"),
    "kernel-image": ("#e3dcf5", "#5b3fa8"),
    "handoff": ("#fff3c4", "#c9a227"),
    "unaccounted": ("#f8d0d0", "#d62728"),
}
FIRMWARE = {
    "conventional": ("#f1f5ee", "#9bb58f"),
    "reserved": ("#e4e4e4", "#7f7f7f"),
    "acpi-reclaim": ("#efe6dc", "#a08060"),
    "acpi-nvs": ("#eadbd0", "#8c6d55"),
    "mmio": ("#e0e0e0", "#6f6f6f"),
}
OTHER = ("#eef0f3", "#a3abb8")  # boot/runtime services, loader and the rest


def physical(kind: str) -> tuple[str, str]:
    """(fill, accent) of an owner or firmware type."""
    return OWNERS.get(kind) or FIRMWARE.get(kind) or OTHER
