"""Shared test settings: hypothesis profiles and the path to ../shared/seed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# "ci" keeps the suite to a few minutes; "fuzz" is for long runs on demand:
#   HYPOTHESIS_PROFILE=fuzz pytest tests
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed"


@pytest.fixture
def seed_dir() -> Path:
    """../shared/seed, the original project's files; skips when it is absent."""
    if not (SEED / "compressed.npz").is_file():
        pytest.skip(f"reference files not found at {SEED} (only CI and developers have ../shared)")
    return SEED
