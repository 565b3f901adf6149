"""The state machine as pytest (and HypoFuzz) sees it: ``make_machine(...).TestCase``.

These run the fixed kernel, which must stay clean; HypoFuzz can fuzz the same classes for as long
as it likes.  (The buggy kernels' machines fail by design; tests/test_fuzzer.py covers them.)
"""

from __future__ import annotations

from rmapfuzz import strategy
from rmapfuzz.machine import machine_settings, make_machine

_MERGE_STORM = strategy.load("merge-storm")
_SWAP = strategy.load("swap")

TestMergeStorm2634 = make_machine("2.6.34", _MERGE_STORM).TestCase
TestMergeStorm2634.settings = machine_settings(_MERGE_STORM, max_examples=100)

TestSwap2634 = make_machine("2.6.34", _SWAP).TestCase
TestSwap2634.settings = machine_settings(_SWAP, max_examples=100)
