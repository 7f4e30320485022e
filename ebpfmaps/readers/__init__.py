"""Readers and writers for the kernel's streaming maps.

* :class:`RingBufReader` consumes a ``BPF_MAP_TYPE_RINGBUF`` (kernel produces, Python consumes).
* :class:`UserRingBufWriter` produces into a ``BPF_MAP_TYPE_USER_RINGBUF`` (Python produces,
  a program drains it with ``bpf_user_ringbuf_drain``).
* :class:`PerfEventReader` opens one perf ring per CPU, stores the perf fds into a
  ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` and reads what ``bpf_perf_event_output`` writes.

All three work on the shared memory the kernel maps into this process, without a
syscall per record.
"""

from __future__ import annotations

from ebpfmaps.readers.perf import PerfEventReader, PerfSample
from ebpfmaps.readers.ringbuf import RingBufReader
from ebpfmaps.readers.userringbuf import UserRingBufReservation, UserRingBufWriter

__all__ = ["PerfEventReader", "PerfSample", "RingBufReader", "UserRingBufReservation", "UserRingBufWriter"]
