"""libbpf's messages routed into Python logging (logger ``ebpfmaps.libbpf``), and captured on demand.

libbpf reports through one process-wide callback ``int print(enum libbpf_print_level, const char
*fmt, va_list args)``. The callback formats with libc's ``vsnprintf``: a ``va_list`` can be walked
only once, so on x86-64 (where it is a pointer to a 24-byte ``__va_list_tag``, per the System V
AMD64 ABI) a copy of that tag is taken first; a message longer than the first buffer (libbpf prints
whole verifier logs through ``%s``) is then formatted again from the copy into a buffer of the size
``vsnprintf`` reported. Elsewhere one large buffer is used and a longer message is cut.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ebpfmaps._libbpf import lib

logger = logging.getLogger("ebpfmaps.libbpf")

# enum libbpf_print_level in libbpf.h
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
_LEVELS = {LIBBPF_WARN: logging.WARNING, LIBBPF_INFO: logging.INFO, LIBBPF_DEBUG: logging.DEBUG}

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_libc = ctypes.CDLL(None, use_errno=True)
_vsnprintf = _libc.vsnprintf
_vsnprintf.restype = ctypes.c_int
_vsnprintf.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

_VA_TAG_SIZE = 24 if platform.machine() in ("x86_64", "AMD64") else 0
_FIRST_BUFFER = 1024
_FALLBACK_BUFFER = 1 << 20

_lock = threading.Lock()
_captures: list[list[str]] = []
_installed = False


def _format(fmt: bytes, args: int) -> str:
    if _VA_TAG_SIZE:
        saved = (ctypes.c_char * _VA_TAG_SIZE)()
        ctypes.memmove(saved, args, _VA_TAG_SIZE)
        buf = ctypes.create_string_buffer(_FIRST_BUFFER)
        need = _vsnprintf(buf, _FIRST_BUFFER, fmt, args)
        if need < _FIRST_BUFFER:
            return buf.value.decode(errors="replace")
        big = ctypes.create_string_buffer(need + 1)
        _vsnprintf(big, need + 1, fmt, ctypes.addressof(saved))
        return big.value.decode(errors="replace")
    buf = ctypes.create_string_buffer(_FALLBACK_BUFFER)
    _vsnprintf(buf, _FALLBACK_BUFFER, fmt, args)
    return buf.value.decode(errors="replace")


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    # Never let an exception cross back into C: ctypes would print it and carry on anyway.
    try:
        if fmt is None or args is None:
            return 0
        if level == LIBBPF_DEBUG and not logger.isEnabledFor(logging.DEBUG):
            return 0
        text = _format(fmt, args).rstrip("\n")
        with _lock:
            for sink in _captures:
                sink.append(text)
        logger.log(_LEVELS.get(level, logging.INFO), "%s", text)
    except Exception:  # pragma: no cover - defensive
        return 0
    return 0


_callback = _PRINT_FN(_on_print)  # module-level: libbpf keeps the pointer, so must we


def install() -> None:
    """Route libbpf's messages into logging (idempotent; replaces libbpf's default stderr printer)."""
    global _installed
    with _lock:
        if not _installed:
            lib.libbpf_set_print(ctypes.cast(_callback, ctypes.c_void_p))
            _installed = True


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect every libbpf message printed inside the block (any thread) into the yielded list.

    Another library in the process that shares this libbpf (bcc links Debian's libbpf.so.1) may have set
    its own printer since :func:`install`: ours is put back for the block and theirs restored after it.
    """
    install()
    ours = ctypes.cast(_callback, ctypes.c_void_p).value
    sink: list[str] = []
    with _lock:
        _captures.append(sink)
        previous = lib.libbpf_set_print(ours)
    try:
        yield sink
    finally:
        with _lock:
            _captures.remove(sink)
            if previous is not None and previous != ours and not _captures:
                lib.libbpf_set_print(previous)
