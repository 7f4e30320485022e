"""User codecs that subclass Codec and override only encode()/decode() are used by every path,
single ops, batches and iteration alike; MapSpec of an extensible type goes through its extension."""

from __future__ import annotations

from typing import Any

import pytest

import ebpfmaps
from ebpfmaps.codecs import Codec
from ebpfmaps.errors import NotSupported


class Upper(Codec):
    """8-byte ASCII names, stored upper-case, given back lower-case."""

    def encode(self, value: Any) -> bytes:
        text = value.decode() if isinstance(value, bytes) else value
        return str(text).upper().encode().ljust(self.size, b"\0")

    def decode(self, data: bytes) -> Any:
        return data.rstrip(b"\0").decode().lower()


def test_user_codec_in_single_ops_batches_and_iteration() -> None:
    with ebpfmaps.HashMap(key_type=Upper(8, "key"), value_type=Upper(8, "value"), max_entries=16) as m:
        m["ab"] = "cd"
        assert m.lookup_bytes("ab") == b"CD".ljust(8, b"\0")  # encode() ran on the value
        m.update_batch(["ef", "gh"], ["ij", "kl"])
        raw = ebpfmaps.open_by_id(m.info().id)
        try:
            # Stored through encode(): upper-case bytes, even though the batch items were str
            assert sorted(raw.keys()) == sorted(k.ljust(8, b"\0") for k in (b"AB", b"EF", b"GH"))
        finally:
            raw.close()
        assert dict(m.items()) == {"ab": "cd", "ef": "ij", "gh": "kl"}  # decode() ran per element
        assert m.lookup_batch() == {"ab": "cd", "ef": "ij", "gh": "kl"}
        assert sorted(m.keys()) == ["ab", "ef", "gh"]


def test_bytes_given_to_a_user_codec_batch_still_pass_through_encode() -> None:
    with ebpfmaps.HashMap(key_size=8, value_type=Upper(8, "value"), max_entries=4) as m:
        # Whole 8-byte items would be joined as they are by the raw fast path; encode() must see them.
        m.update_batch([b"k" * 8], [b"abcdefgh"])
        assert m.lookup_bytes(b"k" * 8) == b"ABCDEFGH"


def test_from_spec_with_an_unknown_extensible_type_asks_the_extensions() -> None:
    spec = ebpfmaps.MapSpec(type=65000, key_size=4, value_size=4, max_entries=4)
    with pytest.raises(NotSupported, match="extensible"):
        ebpfmaps.Map.from_spec(spec)
