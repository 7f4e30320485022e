"""Histogram maps printed the way bcc prints them.

BPF tools keep distributions in a map whose key is a bucket index (a *slot*): ``log2l(value)``
for a power-of-two histogram, the value itself for a linear one. bcc's ``print_log2_hist`` and
``print_linear_hist`` render such a map as text; these functions produce the same text, byte
for byte, for the same data, so scripts written against bcc's output keep working.

A key wider than the slot carries a *section* before it (bcc's ``struct { u64 bucket; u64
slot; }``, e.g. one histogram per disk or per process): one histogram is printed per section,
headed ``<section_header> = <section>``. Per-CPU histogram maps are summed over the CPUs.

>>> print(format_log2_hist([0, 1, 3, 0, 2], "usecs"), end="")
     usecs               : count     distribution
         0 -> 1          : 1        |*************                           |
         2 -> 3          : 3        |****************************************|
         4 -> 7          : 0        |                                        |
         8 -> 15         : 2        |**************************              |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import Map
from ebpfmaps.snapshot import CounterField, read_counters

LOG2_SLOTS = 65  # log2 of any 64-bit value, plus slot 0
LINEAR_SLOTS = 1025
STARS_MAX = 40  # bcc's bar width


def stars(val: int, val_max: int, width: int) -> str:
    """The bar: ``val / val_max`` of ``width`` stars, and a ``+`` at the end when ``val`` exceeds ``val_max``."""
    n = 0
    while not (n > (width * val / val_max) - 1 or n > width - 1):
        n += 1
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text


def _extent(vals: Sequence[int]) -> tuple[int, int]:
    idx_max, val_max = -1, 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        if v > val_max:
            val_max = v
    return idx_max, val_max


def log2_hist_lines(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> list[str]:
    """bcc's log2 histogram of ``vals`` (count per slot; slot ``i`` counts ``[2**(i-1), 2**i - 1]``)."""
    idx_max, val_max = _extent(vals)
    if idx_max <= 32:
        header = "     %-19s : count     distribution"
        body = "%10d -> %-10d : %-8d |%-*s|"
        width = STARS_MAX
    else:
        header = "               %-29s : count     distribution"
        body = "%20d -> %-20d : %-8d |%-*s|"
        width = STARS_MAX // 2
    lines = [header % val_type] if idx_max > 0 else []
    for i in range(1, idx_max + 1):
        low = (1 << i) >> 1
        high = (1 << i) - 1
        if low == high:
            low -= 1
        val = vals[i]
        if strip_leading_zero and not val:
            continue
        strip_leading_zero = False
        lines.append(body % (low, high, val, width, stars(val, val_max, width)))
    return lines


def linear_hist_lines(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> list[str]:
    """bcc's linear histogram of ``vals`` (count per integer value)."""
    idx_max, val_max = _extent(vals)
    # bcc's own format strings, kept verbatim so the text stays byte for byte the same.
    lines = ["     %-13s : count     distribution" % val_type] if idx_max >= 0 else []  # noqa: UP031
    for i in range(idx_max + 1):
        val = vals[i]
        if strip_leading_zero and not val:
            continue
        strip_leading_zero = False
        lines.append("        %-10d : %-8d |%-*s|" % (i, val, STARS_MAX, stars(val, val_max, STARS_MAX)))  # noqa: UP031
    return lines


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def format_log2_hist(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> str:
    return _text(log2_hist_lines(vals, val_type, strip_leading_zero))


def format_linear_hist(vals: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> str:
    return _text(linear_hist_lines(vals, val_type, strip_leading_zero))


@dataclass
class Histogram:
    """The counts of one histogram: ``counts[slot]``; ``section`` is None for a map without sections."""

    section: Any
    counts: list[int]


def default_section(raw: bytes) -> Any:
    """A section key as bcc shows it: an integer field as an int, a char array as its bytes up to the NUL."""
    if len(raw) in (1, 2, 4, 8):
        return int.from_bytes(raw, "little")
    return raw.split(b"\0", 1)[0]


def read_histograms(m: Map, *, linear: bool = False, slot_size: int | None = None,
                    section_decoder: Callable[[bytes], Any] = default_section) -> list[Histogram]:
    """The histograms in ``m``: one, or one per section (sorted), with per-CPU counts summed.

    The slot is the key's last ``slot_size`` bytes (default: the whole key when it is 4 or 8
    bytes wide, else its last 8 bytes, as in bcc's ``struct { ...; u64 slot; }``); the bytes
    before it are the section, decoded by ``section_decoder``. Values are unsigned counters of
    1, 2, 4 or 8 bytes. Raises :class:`InvalidArgument` for a slot outside the histogram.
    """
    ks = m.key_size
    if slot_size is None:
        slot_size = ks if ks in (4, 8) else 8
    if slot_size not in (1, 2, 4, 8) or slot_size > ks:
        raise InvalidArgument(f"a slot of {slot_size} bytes does not fit the map's {ks}-byte key (1, 2, 4 or 8)")
    limit = LINEAR_SLOTS if linear else LOG2_SLOTS
    if m.value_size not in (1, 2, 4, 8):
        raise InvalidArgument(f"histogram counts are integers: a {m.value_size}-byte value is not one")
    snap = read_counters(m, (CounterField("count", 0, m.value_size),))
    by_section: dict[bytes, list[int]] = {}
    for key, (count,) in zip(snap.keys, snap.totals):
        section, slot = key[: ks - slot_size], int.from_bytes(key[ks - slot_size :], "little")
        if slot >= limit:
            kind = "linear" if linear else "log2"
            raise InvalidArgument(f"slot {slot} is past the last {kind} slot ({limit - 1})"
                                  + ("" if linear else "; is this a linear histogram (--linear)?"))
        counts = by_section.setdefault(section, [0] * limit)
        counts[slot] = count
    if not by_section:
        return [Histogram(None, [0] * limit)] if ks == slot_size else []
    if ks == slot_size:
        return [Histogram(None, by_section[b""])]
    decoded = [(section_decoder(raw), counts) for raw, counts in by_section.items()]
    decoded.sort(key=lambda sc: (str(type(sc[0])), sc[0]))
    return [Histogram(s, c) for s, c in decoded]


def format_histograms(hists: Sequence[Histogram], val_type: str = "value", *, linear: bool = False,
                      section_header: str = "Bucket ptr", strip_leading_zero: bool = False,
                      section_format: Callable[[Any], str] = repr) -> str:
    """bcc's text for ``hists``: sections headed ``\\n<section_header> = <repr(section)>`` like bcc."""
    render = linear_hist_lines if linear else log2_hist_lines
    out: list[str] = []
    for h in hists:
        if h.section is not None:
            out.append("")
            out.append(f"{section_header} = {section_format(h.section)}")
        out.extend(render(h.counts, val_type, strip_leading_zero))
    return _text(out)


def format_map_hist(m: Map, val_type: str = "value", *, linear: bool = False, section_header: str = "Bucket ptr",
                    slot_size: int | None = None, strip_leading_zero: bool = False) -> str:
    """``m`` printed as bcc's ``print_log2_hist`` (or ``print_linear_hist``) prints it."""
    hists = read_histograms(m, linear=linear, slot_size=slot_size)
    return format_histograms(hists, val_type, linear=linear, section_header=section_header,
                             strip_leading_zero=strip_leading_zero)


__all__ = [
    "LINEAR_SLOTS", "LOG2_SLOTS", "Histogram", "format_histograms", "format_linear_hist", "format_log2_hist",
    "format_map_hist", "linear_hist_lines", "log2_hist_lines", "read_histograms", "stars",
]
