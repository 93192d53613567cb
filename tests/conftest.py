import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def no_tf32():
    """Full float32 matmuls and convolutions on CUDA for this test (restored afterwards)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="session")
def tiny_mars(tmp_path_factory):
    """A small synthetic MARS tree in the official layout (session-wide, written once)."""
    from datasets.synthetic_mars import write_synthetic_mars
    root = str(tmp_path_factory.mktemp("mars"))
    counts = write_synthetic_mars(root, num_train_ids=8, num_test_ids=6, num_cameras=3, frames=(4, 8),
                                  num_distractors=2, num_junk=2, size=(32, 16), seed=1)
    return root, counts


def pytest_collection_modifyitems(config, items):
    """Tests skipped without CUDA also carry the ``cuda`` marker: ``pytest -m cuda`` runs them all."""
    for item in items:
        if any("cuda" in str(mark.kwargs.get("reason", "")).lower() for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.cuda)
