"""A text stream that writes everything to the stream it replaces and also hands it to a sink: how a
worker keeps its last words (last_words) and each job's own output (job_output) while the terminal
still sees it all. Torch-free."""
from __future__ import annotations

import io
from typing import Callable, TextIO


class Tee(io.TextIOBase):
    """sys.stdout or sys.stderr for a worker: each write goes to `stream`, then to `sink`."""

    def __init__(self, stream: TextIO, sink: Callable[[str], None]):
        self.stream, self.sink = stream, sink

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.sink(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:  # faulthandler and friends write to the real descriptor
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")
