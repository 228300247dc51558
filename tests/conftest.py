"""Suite-wide fixtures."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_thread_count():
    """Every test starts with the process's thread count: the CLI's and the benchmarks'
    ``--threads`` set torch's for the rest of the process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
