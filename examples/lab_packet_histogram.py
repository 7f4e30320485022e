"""Lab: a packet-size histogram in an array map filled by XDP, printed as a log2 histogram.

The XDP program is written with ebpfmaps.asm (no compiler needed). It looks at IPv4 UDP
frames to one port and adds 1 to slot k of a 32-entry array for a frame of length
[2^k, 2^(k+1)). Python then reads the array and prints it the way bcc's print_log2_hist
does. The traffic runs between two private network namespaces joined by a veth pair
(ebpfmaps.xdp.VethPair), which are removed at the end.

Run as root:  .venv/bin/python examples/lab_packet_histogram.py [--packets N] [--port P]
"""

from __future__ import annotations

import argparse
import ctypes
import random
import time
from collections.abc import Sequence

import ebpfmaps
from ebpfmaps import asm, xdp
from ebpfmaps.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10
from ebpfmaps.programs import Program

XDP_PASS = 2
SLOTS = 32
ETH_P_IP_LE = 0x0008  # htons(0x0800) as read by a little-endian 16-bit load
IPPROTO_UDP = 17


def histogram_program(hist: ebpfmaps.Map, port: int) -> asm.Assembled:
    """XDP: for IPv4/UDP frames to ``port`` (no IP options), hist[log2(frame length)] += 1; always XDP_PASS."""
    port_be = int.from_bytes(port.to_bytes(2, "big"), "little")  # the port as a 16-bit load reads it
    insns: list[object] = [
        asm.ldx(4, R2, R1, 0),              # r2 = ctx->data
        asm.ldx(4, R3, R1, 4),              # r3 = ctx->data_end
        asm.mov64(R4, R2),
        asm.add64(R4, 14 + 20 + 8),         # the verifier needs the bound checked before any header read
        asm.jgt(R4, R3, "pass"),
        asm.ldx(2, R5, R2, 12),             # eth->h_proto
        asm.jne(R5, ETH_P_IP_LE, "pass"),
        asm.ldx(1, R5, R2, 14),             # ip->version/ihl
        asm.jne(R5, 0x45, "pass"),          # IPv4 without options: the UDP header is at 34
        asm.ldx(1, R5, R2, 23),             # ip->protocol
        asm.jne(R5, IPPROTO_UDP, "pass"),
        asm.ldx(2, R5, R2, 36),             # udp->dest
        asm.jne(R5, port_be, "pass"),
        asm.mov64(R7, R3),
        asm.sub64(R7, R2),                  # r7 = frame length
        asm.mov64(R6, 0),                   # r6 = slot: the highest k with len >= 2^k
    ]
    for k in range(SLOTS - 1, 0, -1):
        insns += [asm.jlt(R7, 1 << k, f"below_{k}"), asm.mov64(R6, k), asm.ja("slot_found"), asm.label(f"below_{k}")]
    insns += [
        asm.label("slot_found"),
        asm.stx(4, R10, R6, -4),            # key on the stack
        asm.ld_map_fd(R1, hist),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "pass"),
        asm.mov64(R1, 1),
        asm.atomic_add(8, R0, R1, 0),       # concurrent CPUs: an atomic add loses nothing
        asm.label("pass"),
        asm.mov64(R0, XDP_PASS),
        asm.exit_(),
    ]
    return asm.assemble(insns)


def log2_histogram(counts: Sequence[int], label: str = "bytes", width: int = 40) -> str:
    """The histogram as bcc's print_log2_hist shows it: one line per slot from the first to the last used."""
    used = [k for k, n in enumerate(counts) if n]
    if not used:
        return f"(no {label} counted)"
    top = max(counts)
    lines = [f"{label:>21} : count     distribution"]
    for k in range(used[0], used[-1] + 1):
        low, high = (0 if k == 0 else 1 << k), (1 << (k + 1)) - 1
        bar = "*" * (counts[k] * width // top if top else 0)
        lines.append(f"{low:>10} -> {high:<10}: {counts[k]:<9} |{bar:<{width}}|")
    return "\n".join(lines)


def payload_sizes(packets: int, seed: int = 2) -> list[int]:
    """UDP payload sizes: a reproducible mix of small, medium and large datagrams."""
    rng = random.Random(seed)
    return [rng.choice((rng.randint(0, 60), rng.randint(60, 600), rng.randint(600, 1400))) for _ in range(packets)]


def run(packets: int = 200, port: int = 9999, seed: int = 2) -> list[int]:
    """Send ``packets`` UDP datagrams of random sizes across a veth pair; return the histogram slots."""
    hist = ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=SLOTS,
                           name="pkt_hist")
    prog = Program.load("xdp", histogram_program(hist, port), name="pkt_hist")
    with hist, prog, xdp.VethPair() as pair:
        with xdp.XdpAttachment(pair.if_b, prog, netns=pair.ns_b):
            pair.send_udp((bytes(n) for n in payload_sizes(packets, seed)), port)
            deadline = time.monotonic() + 5
            while sum(hist.values()) < packets and time.monotonic() < deadline:
                time.sleep(0.01)  # frames are processed in softirq context just after sendto()
        return [int(v) for v in hist.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packets", type=int, default=200)
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args(argv)
    counts = run(args.packets, args.port)
    print(f"IPv4/UDP frames to port {args.port} by size (an XDP program filled the array map):")
    print(log2_histogram(counts))
    print(f"total: {sum(counts)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
