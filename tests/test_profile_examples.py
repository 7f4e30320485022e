"""The profile examples run unchanged in a fresh process under each profile.

The counter, configuration and statistics maps are plain arrays
that work in both profiles (the statistics map, 256 x 24 bytes, fits the
embedded pool); profile_differences.py shows what differs.
"""

from __future__ import annotations

import pytest

from tests.profile_helpers import ROOT, run

EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("profile_name", ["cloud", "embedded"])
@pytest.mark.parametrize("example", ["profile_counter.py", "profile_config.py", "profile_stats.py"])
def test_profile_example_runs_in_both_profiles(example: str, profile_name: str) -> None:
    out = run([str(EXAMPLES / example)], EBPFMAPS_PROFILE=profile_name)
    assert out.returncode == 0, f"{example} under {profile_name}:\n{out.stdout}\n{out.stderr}"
    assert out.stdout.splitlines()[0] == f"profile: {profile_name}"
    if profile_name == "embedded":
        assert "pool:" in out.stdout or example == "profile_config.py"


def test_profiles_example_cloud() -> None:
    out = run([str(EXAMPLES / "profile_differences.py")], EBPFMAPS_PROFILE="cloud")
    assert out.returncode == 0, out.stderr
    assert "resized 1000 -> 10000, arr[999] = 42" in out.stdout
    assert "LRU map of 1000 after 1100 inserts" in out.stdout


def test_profiles_example_embedded() -> None:
    out = run([str(EXAMPLES / "profile_differences.py")], EBPFMAPS_PROFILE="embedded")
    assert out.returncode == 0, out.stderr
    assert "hasattr(arr, 'resize') = False" in out.stdout
    assert "LRU refused" in out.stdout
    assert "too big for the pool" in out.stdout
