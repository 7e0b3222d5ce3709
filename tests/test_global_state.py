"""Tests leave torch's global settings as they found them, under the pytest version that runs them.

pytest 9.2's monkeypatch undo deletes an attribute it did not find in the object's __dict__, and deleting an
option of torch's config hides it instead of restoring its default: every later compiled test then failed with
"torch._dynamo.config.recompile_limit does not exist". These tests run two tests in a pytest session of their
own: the first changes the settings inside the fixture under test, the second must find them as before.
"""

from __future__ import annotations

import pytest
import torch

pytest_plugins = ["pytester"]

SETTINGS_SEEN_BEFORE = """
import os

import torch

from conftest import dynamo_settings_restored  # noqa: F401
IMPORT_AUTOUSE
from fcloop.model.compile import set_recompile_limit

BEFORE = {
    "recompile_limit": torch._dynamo.config.recompile_limit,
    "fail_on_recompile_limit_hit": torch._dynamo.config.fail_on_recompile_limit_hit,
    "suppress_errors": torch._dynamo.config.suppress_errors,
}


def test_1_changes_the_settings(FIXTURE):
    set_recompile_limit(BEFORE["recompile_limit"] + 5)
    torch._dynamo.config.fail_on_recompile_limit_hit = not BEFORE["fail_on_recompile_limit_hit"]
EVERYTHING_ELSE
    raise RuntimeError("a test that fails half-way still leaves the settings as it found them")


def test_2_finds_them_as_before():
    now = {name: getattr(torch._dynamo.config, name) for name in BEFORE}
    assert now == BEFORE
    assert torch.get_default_dtype() == torch.float32
    assert "FCLOOP_TEST_LEFTOVER" not in os.environ
"""


EVERYTHING_ELSE = """
    torch._dynamo.config.suppress_errors = not BEFORE["suppress_errors"]
    torch.set_default_dtype(torch.float64)
    os.environ["FCLOOP_TEST_LEFTOVER"] = "1"
"""


@pytest.mark.parametrize(
    ("fixture", "imports", "changes"),
    [
        # The suite's autouse fixture restores everything a test may change.
        ("torch_global_state_restored", "from conftest import torch_global_state_restored\n", EVERYTHING_ELSE),
        # The compiled tests' fixture alone (the autouse one not imported here) restores the two limit options.
        ("dynamo_settings_restored", "", ""),
    ],
)
def test_a_test_that_changes_torch_settings_leaves_them_as_it_found_them(pytester, fixture, imports, changes):
    before = torch._dynamo.config.get_config_copy()
    source = (
        SETTINGS_SEEN_BEFORE.replace("IMPORT_AUTOUSE\n", imports)
        .replace("FIXTURE", fixture)
        .replace("EVERYTHING_ELSE\n", changes.lstrip("\n"))
    )
    pytester.makepyfile(test_settings=source)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_settings.py::test_1_changes_the_settings - RuntimeError*"])
    assert torch._dynamo.config.get_config_copy() == before


def test_the_restored_settings_are_torch_options_again_not_hidden_ones():
    """What pytest 9.2's undo did: a deleted option reads as missing. Restoring puts it back as an option."""
    from conftest import restore_torch_global_state, torch_global_state

    saved = torch_global_state()
    del torch._dynamo.config.recompile_limit  # what monkeypatch's undo does under pytest >= 9.2
    with pytest.raises(AttributeError, match="recompile_limit"):
        _ = torch._dynamo.config.recompile_limit
    restore_torch_global_state(saved)
    assert torch._dynamo.config.recompile_limit == saved["dynamo"]["recompile_limit"]
