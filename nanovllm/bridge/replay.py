"""ReplayClient: asks a KV-events replay endpoint (vLLM's ROUTER) for the batches it buffers.

::

    DEALER --[b"", start seq (8 bytes)]--> ROUTER
           <--[b"", topic, seq, payload]-- one per buffered batch with seq >= start
           <--[b"", b"", -1 (8 bytes), b""]-- the end

``fetch`` blocks until the end marker, at most ``timeout`` seconds per message; without an answer
it returns None and drops the socket, so a late answer cannot mix with the next request's.
"""

from __future__ import annotations

from nanovllm.bridge.wire import END_OF_REPLAY, WireError, unpack_frames
from nanovllm.errors import ConfigError

REPLAY_TIMEOUT = 2.0  # seconds to wait for each message of a replay


def check_endpoint(endpoint: str) -> None:
    """What ZMQ would take and then retry forever: a TCP port outside 1..65535."""
    if endpoint.startswith("tcp://"):
        port = endpoint.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"endpoint {endpoint!r}: the port must be 1..65535; pass an endpoint "
                "like 'tcp://127.0.0.1:5557' or 'ipc:///tmp/kv-events'"
            )


class ReplayClient:
    def __init__(self, ctx, endpoint: str, timeout: float = REPLAY_TIMEOUT):
        self.ctx, self.endpoint, self.timeout = ctx, endpoint, timeout
        self.error: str | None = None  # of the last fetch
        self.malformed = 0  # frames of the last fetch that were not a publication
        self.sock = None
        self._connect()  # now, so a bad endpoint raises here, not in the subscriber's thread

    def _connect(self) -> None:
        import zmq

        check_endpoint(self.endpoint)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigError(
                f"cannot connect to the replay endpoint {self.endpoint!r}: {e}; pass one like "
                "'tcp://127.0.0.1:5558' or 'ipc:///tmp/kv-replay'"
            ) from None

    def fetch(self, start: int, end: int | None = None) -> list[tuple[int, bytes]] | None:
        """(seq, payload) of the buffered batches in [start, end) (``end`` None: all), or None
        when the endpoint did not answer."""
        self.error, self.malformed = None, 0
        if self.sock is None:
            self._connect()
        self.sock.send_multipart([b"", start.to_bytes(8, "big")])
        got: dict[int, bytes] = {}
        while self.sock.poll(int(self.timeout * 1000)):
            frames = self.sock.recv_multipart()
            if len(frames) == 4 and frames[2] == END_OF_REPLAY:  # [b"", topic b"", END, b""]
                return sorted(got.items())
            try:
                _, seq, payload = unpack_frames(frames[1:])
            except WireError as e:
                self.malformed += 1
                self.error = f"replay: {e}"
                continue
            if start <= seq and (end is None or seq < end):
                got[seq] = payload
        self.close()
        self.error = f"the replay endpoint {self.endpoint} did not answer in {self.timeout} s"
        return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
