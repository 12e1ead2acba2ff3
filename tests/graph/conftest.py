"""Graph tests run single-threaded: the CPUs are shared and small convs slow down badly when oversubscribed."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _single_threaded(one_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""
