"""The suite's own set-up: two workers that keep each shared run on one of them.

setup.cfg runs the tests on two pytest-xdist workers with ``--dist loadgroup``, and
tests/conftest.py gives every test module a group (merged where modules share a session
cache). Under pytest 9, xdist 3.8 could not put its group into a node id: the groups were
silently ignored, every module fixture was built on both workers, and CI took as long as
one process. A test's node id carries its group exactly when grouping works.
"""
from __future__ import annotations

import os

from strict import missing


def test_each_test_runs_inside_its_modules_group(request):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        missing("the suite ran in one process (setup.cfg asks for two workers: -n 2)")
    assert request.node.nodeid.endswith("@module:test_suite_workers"), request.node.nodeid


def test_modules_sharing_a_session_cache_share_a_group():
    """The README's pipeline run (conftest_runs) is made once: its users are one group."""
    import conftest

    import test_docs_commands
    import test_train_demo

    class Item:
        fixturenames = ()

        def __init__(self, module):
            self.module = module

    assert conftest._shared_caches(Item(test_docs_commands)) == {"conftest_runs"}
    assert conftest._shared_caches(Item(test_train_demo)) == {"conftest_runs"}
