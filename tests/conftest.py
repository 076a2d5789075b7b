"""Shared fixtures. PyTorch parity tests skip when torch is missing, unless CHAINRULE_REQUIRE_TORCH=1
(as in CI), where a missing torch is an error: those tests must run, not skip."""

import os

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same examples every run (a red main must mean a real bug); locally they vary.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def torch():
    if os.environ.get("CHAINRULE_REQUIRE_TORCH") == "1":
        import torch
    else:
        torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
