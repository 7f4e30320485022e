"""Reading ``/proc/self/fdinfo/<fd>``: what the kernel adds beyond BPF_OBJ_GET_INFO_BY_FD."""

from __future__ import annotations


def read_fdinfo(fd: int, pid: str = "self") -> dict[str, str]:
    """The ``key: value`` lines of an fd's fdinfo (``map_type``, ``memlock``, ``frozen``...)."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
    return out


def memlock(fd: int) -> int | None:
    """The map's charged kernel memory in bytes (fdinfo ``memlock``)."""
    value = read_fdinfo(fd).get("memlock")
    return int(value) if value is not None else None
