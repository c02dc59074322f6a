"""`one_thread`: run a test module with one intra-op torch thread, restoring the setting after.

The models in these tests are tiny; on a shared, loaded 2-core machine two threads per op mostly
wait for each other (measured: greedy decoding of a micro Marian 4 s with 2 threads, 0.05 s with 1).
Use with `from torch_threads import one_thread` and `pytestmark = pytest.mark.usefixtures("one_thread")`.
"""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
