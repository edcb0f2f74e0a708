"""A one-writer, many-reader broadcast channel over POSIX shared memory, for messages of any size.

The main process pickles a message once into a shared-memory segment; every worker reads it from
there. Signalling is not done here: the writer gets back a small ``Ticket`` (segment name, size) and
sends it over each worker's pipe, so a worker never reads a half-written message.

::

    writer.write(obj) -> Ticket("nanovllm_<pid>_<token>_<gen>", nbytes)
                           --pipe-->  reader.read(ticket)
        segment: [ pickled obj | unused ]   (replaced by one 2x larger, gen + 1, when a message
                                             outgrows it)

Contract:
- Segment names are ``process_prefix()`` (``SHM_PREFIX`` and the writing process's pid) followed
  by a per-channel token, so two engines never collide, and whoever lists /dev/shm (a leak check,
  an operator) can tell which process made a segment. Only the writer creates and unlinks
  segments; ``close()`` unlinks the current one, and the previous one is unlinked as soon as it is
  replaced (a reader that still maps it keeps a valid mapping until it moves on).
- The writer must not write again before every reader has finished reading the last message (the
  worker group waits for every rank's reply to a step before sending the next one).
"""

from __future__ import annotations

import os
import pickle
import uuid
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

SHM_PREFIX = "nanovllm_"
INITIAL_BYTES = 1 << 20  # grows as needed; there is no upper limit on a message


@dataclass(frozen=True)
class Ticket:
    """Where a message lies: the segment's name and the message's length in bytes."""

    name: str
    nbytes: int


def new_channel_token() -> str:
    # short: macOS caps shared-memory names at 31 characters, and "/nanovllm_<pid>_<token>_<gen>"
    # with a 7-digit pid and 8 hex digits leaves 3 for the generation
    return uuid.uuid4().hex[:8]


def process_prefix(pid: int | None = None) -> str:
    """The start of every segment name a writer in process ``pid`` (default: this one) creates."""
    return f"{SHM_PREFIX}{os.getpid() if pid is None else pid}_"


class ShmWriter:
    def __init__(self, token: str | None = None, initial_bytes: int | None = None):
        self.token = token or new_channel_token()
        self.pid = os.getpid()
        self.initial_bytes = INITIAL_BYTES if initial_bytes is None else initial_bytes
        self._shm: shared_memory.SharedMemory | None = None  # created on the first write
        self._generation = 0

    @property
    def prefix(self) -> str:
        """Every segment this writer creates has a name starting with this."""
        return f"{process_prefix(self.pid)}{self.token}_"

    @property
    def generation(self) -> int:
        """How many segments this writer has created so far (each one replaced the last)."""
        return self._generation

    @property
    def capacity(self) -> int:
        return 0 if self._shm is None else self._shm.size

    def write(self, obj: Any) -> Ticket:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > self.capacity:
            self._replace(max(len(data), 2 * self.capacity, self.initial_bytes))
        self._shm.buf[: len(data)] = data
        return Ticket(self._shm.name, len(data))

    def _replace(self, size: int) -> None:
        name = f"{self.prefix}{self._generation}"
        self._generation += 1
        new = shared_memory.SharedMemory(name=name, create=True, size=size)
        self._unlink_current()
        self._shm = new

    def _unlink_current(self) -> None:
        shm, self._shm = self._shm, None
        if shm is None:
            return
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unlink the current segment. Safe to call more than once."""
        self._unlink_current()


class ShmReader:
    def __init__(self):
        self._shm: shared_memory.SharedMemory | None = None

    def read(self, ticket: Ticket) -> Any:
        if self._shm is None or self._shm.name != ticket.name:
            self.close()
            self._shm = shared_memory.SharedMemory(name=ticket.name)
        with self._shm.buf[: ticket.nbytes] as view:  # released at once, so close() can unmap
            return pickle.loads(view)

    def close(self) -> None:
        shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()
