"""``lines_run``: how many lines of some modules Python executes for a call.

A complexity test that counts work instead of timing it: a loop over every mailbox name nested
in another loop over every name runs N² lines whatever it is called, while the machine's load
doesn't change the count. Each pass of a loop, comprehension or generator expression counts
as a line, so a scan hidden in ``any(...)`` is counted too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any


def lines_run(modules: list[ModuleType], call: Callable[[], Any]) -> int:
    """The lines of ``modules`` executed while ``call()`` runs (other modules untraced)."""
    files = {module.__file__ for module in modules}
    count = 0

    def in_frame(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return in_frame

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return in_frame if frame.f_code.co_filename in files else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        call()
    finally:
        sys.settrace(previous)
    return count
