"""Example counts of the model and fuzz tests, chosen by the environment.

Default: small enough for ``make test`` on the host and inside slow emulated VM guests.
``EBPFMAPS_DEEP=1``: long runs (``make test-deep``). The deadline is always lifted (the kernel's
timing is not under test), and settings are applied per test class, never loaded globally, so the
profile another plugin loads (the VM guests' one) still governs every other test.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

DEEP = os.environ.get("EBPFMAPS_DEEP", "").lower() in ("1", "true", "yes")

_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]


def model_settings(*, examples: int = 25, steps: int = 20, **kw: Any) -> settings:
    """Settings of one state machine: ``examples``/``steps`` by default, 1000/50 when deep."""
    if DEEP:
        examples, steps = max(examples, 1000), max(steps, 50)
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=_HEALTH, **kw)


def fuzz_settings(*, examples: int = 150, deep_examples: int = 20_000, **kw: Any) -> settings:
    """Settings of the fuzz target (``FUZZ_SECONDS`` bounds the deep run by time, see tests/fuzz)."""
    return settings(max_examples=deep_examples if DEEP else examples, deadline=None,
                    suppress_health_check=_HEALTH, **kw)
