"""Shared fixtures. Tests of what needs an optional package (PyTorch parity, ONNX Runtime, safetensors)
skip when it is missing, unless CHAINRULE_REQUIRE_EXTRAS=1 (as in CI), where a missing package is an
error: those tests must run, not skip."""

import importlib
import os

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same examples every run (a red main must mean a real bug); locally they vary.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# chainrule speaks the locale's language; the tests' expected messages are English, so the suite (and the
# commands it starts) runs without a locale whatever the developer's is. Tests of the languages set their own.
for _name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"


def optional(name):
    """The optional package ``name``, or a skip (a failure under CHAINRULE_REQUIRE_EXTRAS=1)."""
    if os.environ.get("CHAINRULE_REQUIRE_EXTRAS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def torch():
    torch = optional("torch")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture(scope="session")
def onnxruntime():
    optional("onnx")
    return optional("onnxruntime")


@pytest.fixture(scope="session")
def safetensors():
    return optional("safetensors")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
