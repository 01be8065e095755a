"""The tests' engine is render.py's: Pulumi's unit-test mocks, recording what the component creates.

Re-exported here so the tests keep importing `run`, `Mocks`, `ACCOUNT` and `REGION` from conftest.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from render import ACCOUNT, REGION, Created, Deployment, Mocks, run  # noqa: E402

__all__ = ["ACCOUNT", "REGION", "Created", "Deployment", "Mocks", "run"]


@pytest.fixture
def deploy():
    return run
