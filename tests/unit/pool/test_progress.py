"""The live progress table on a terminal: redrawn in place, without drawing over a message printed
below it (the stop message of Ctrl-C stays visible)."""
from __future__ import annotations

import io

from runner.pool.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Store:
    def clock(self):
        return 1e9

    def device_counts(self, sweep, since):
        return [{"device": "cpu", "done": 1, "running": 1, "finished_since": 1}]

    def counts(self, sweep):
        return {"s": {"pending": 2, "running": 1, "done": 1}}


def test_a_redraw_moves_back_over_the_table_but_not_over_a_message_below_it():
    out = _Terminal()
    progress = Progress(_Store(), None, ["cpu"], stream=out)
    progress.update(final=True)
    progress.update(final=True)
    assert out.getvalue().count("\x1b[2F") == 1  # the second drawing replaced the first (2 lines)
    out.write("stopping: running jobs are released at their next step\n")
    progress.keep_above()
    progress.update(final=True)
    after = out.getvalue().split("stopping:")[1]
    assert "\x1b[2F" not in after and "done      1" in after  # drawn below the message, not over it
