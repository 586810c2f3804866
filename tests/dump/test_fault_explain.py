"""kmtool.dump.fault_explain's pure parts: error codes in words and the level of a walk that
refused an access. The whole explanation on real fault dumps is in tests/integration."""

from __future__ import annotations

from kmtool.dump.fault_explain import access_stopped, decode_error


def step(level: str, index: int, entry: int) -> dict[str, object]:
    return {"level": level, "index": index, "entry": hex(entry)}


WALK = [step("PML4", 0, 0x1007), step("PDPT", 1, 0x2007), step("PD", 0, 0x3007)]  # P|W|U


def test_page_fault_error_codes() -> None:
    assert decode_error(14, 0x0) == ["not P (the page was not present)"]
    assert decode_error(14, 0x3) == ["P (the page was present (a protection fault))", "W (a write)"]
    assert decode_error(14, 0x8)[1] == "RSVD (a reserved bit was set in a paging entry)"
    assert decode_error(14, 0x14)[1:] == ["U (from user mode)", "I (an instruction fetch)"]


def test_selector_error_codes() -> None:
    assert decode_error(13, 0x1A) == ["IDT index 3"]
    assert decode_error(13, 0x28 | 1) == [
        "GDT index 5",
        "EXT (raised while delivering an external event)",
    ]
    assert decode_error(11, 0x2C) == ["LDT index 5"]
    assert decode_error(13, 0) == [] and decode_error(8, 0) == []


def test_the_level_that_refused() -> None:
    leaf = step("PT", 7, 0x4001)  # present, read-only, supervisor
    assert access_stopped(WALK + [leaf], 0x3, None) == (
        "PT entry 7 is read-only (W clear) and the access was a write"
    )
    assert access_stopped(WALK + [leaf], 0x5, None).startswith("PT entry 7 is supervisor-only")
    nx = step("PT", 7, 0x4003 | 1 << 63)
    assert access_stopped(WALK + [nx], 0x11, None).startswith("PT entry 7 sets NX")
    bad = step("PT", 7, 0x4003 | 1 << 51)
    assert access_stopped(WALK + [bad], 0x9, None) == (
        f"a reserved bit is set (PT entry 7 ({0x4003 | 1 << 51:#x}) has bit 51 set)"
    )
    assert access_stopped(WALK, 0x2, "PD entry 0 is not present") == "PD entry 0 is not present"
    ok = step("PT", 7, 0x4007)
    assert access_stopped(WALK + [ok], 0x2, None).startswith("every level allows the access now")
