from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    # The 2-core CI machine is shared: two intra-op threads fighting other jobs ran a tiny
    # R50 step ~10x slower than one thread. Results do not depend on this (each comparison
    # runs both sides under the same setting).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
