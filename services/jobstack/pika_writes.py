"""Fewer, larger socket writes from pika (1.x): the same bytes in the same order.

pika hands every AMQP frame to its transport as its own buffer and sends each buffer with its own
`send()` call: a confirmed publish is three system calls (method, header, body frames), and a
loop turn that publishes a hundred results makes three hundred. Profiles of the engine and the user
interface under load show those sends as the largest single cost of both processes, and every
small TCP segment is work for the broker too, which shares the machine's cores.

Two changes, both at pika's own seams and both byte-for-byte neutral:

* a message's frames go to the transport as one buffer (`Connection._output_marshaled_frames`),
  over TLS as over plain TCP;
* on plain TCP, the buffers queued when the socket becomes writable go out in one `send()`, up to
  `MAX_COALESCED_BYTES`. TLS is left alone: after SSL_ERROR_WANT_WRITE, OpenSSL wants the same
  buffer again, so its chunks must not change shape once tried.

`install()` is idempotent and checks that pika still has the attributes it replaces; if a pika
release moves them, the services run with pika's own behaviour and log why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pika import connection as pika_connection
from pika.adapters.utils import io_services_utils

log = logging.getLogger("jobstack.amqp")

# Upper bound of one coalesced send: large enough for a loop turn's worth of small messages, small
# enough that a partial send never re-copies much.
MAX_COALESCED_BYTES = 256 * 1024

_installed = False


def _output_marshaled_frames(self: Any, marshaled_frames: Sequence[bytes]) -> None:
    # pika's version, with one buffer for the whole message instead of one per frame.
    if not marshaled_frames:
        return
    data = marshaled_frames[0] if len(marshaled_frames) == 1 else b"".join(marshaled_frames)
    self.bytes_sent += len(data)
    self.frames_sent += len(marshaled_frames)
    self._adapter_emit_data(data)


def _coalescing(produce: Callable[[Any], None]) -> Callable[[Any], None]:
    def _produce(self: Any) -> None:
        buffers = self._tx_buffers
        if len(buffers) > 1:
            taken: list[bytes] = []
            size = 0
            while buffers and size < MAX_COALESCED_BYTES:
                chunk = buffers.popleft()
                taken.append(chunk)
                size += len(chunk)
            buffers.appendleft(b"".join(taken))
        produce(self)

    return _produce


def install() -> None:
    global _installed  # one process-wide switch, like pika's own module state
    if _installed:
        return
    plaintext = getattr(io_services_utils, "_AsyncPlaintextTransport", None)
    base_produce = getattr(getattr(io_services_utils, "_AsyncTransportBase", None), "_produce", None)
    connection = getattr(pika_connection, "Connection", None)
    if plaintext is None or base_produce is None or not hasattr(connection, "_output_marshaled_frames"):
        log.warning("pika's transport is not the expected one; socket writes are not coalesced")
        _installed = True
        return
    connection._output_marshaled_frames = _output_marshaled_frames  # type: ignore[union-attr]
    plaintext._produce = _coalescing(base_produce)
    _installed = True
