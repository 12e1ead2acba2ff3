"""Graph tests run single-threaded: the CPUs are shared and small convs slow down badly when oversubscribed."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
