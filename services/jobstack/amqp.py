"""pika's asyncio adapter behind awaitables: one connection, one confirm-mode channel.

The asyncio adapter keeps pika's I/O (and heartbeats) on the event loop, so a job that sleeps with
`await asyncio.sleep` never blocks the connection, however long it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from . import pika_writes
from .config import ServiceSettings

log = logging.getLogger("jobstack.amqp")

pika_writes.install()


class BrokerUnavailable(Exception):
    """The broker could not be reached or the connection was lost."""


class TopologyConflict(Exception):
    """The broker refused a declaration (an existing object has other flags); retrying cannot help."""


# Refusals with a conflict's reply code that pass by themselves, so they are retried like a lost
# connection instead of stopping the service: a stream consumer attached to a node whose member of
# the stream is not running (just declared, the node restarting, or no replica there until one is
# added).
PASSING_REFUSALS = ("does not have a replica on the local node",)


class PublishFailure(enum.StrEnum):
    """Every way a confirmed publish can fail; the values are the `reason` label of publish_failures_total."""

    NACKED = "nacked"  # the broker refused it (e.g. a queue with overflow reject-publish is full)
    UNROUTABLE = "unroutable"  # returned: no queue is bound for its routing key
    CONNECTION_LOST = "connection-lost"  # the answer can no longer come; the broker may or may not have it
    TIMEOUT = "timeout"  # no answer in time (flow control, an overloaded broker)


class PublishFailed(Exception):
    def __init__(self, kind: PublishFailure, detail: str = "") -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail


def connection_parameters(settings: ServiceSettings, connection_name: str) -> pika.ConnectionParameters:
    ssl_options = None
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
        ssl_options = pika.SSLOptions(context, server_hostname=settings.host)
    return pika.ConnectionParameters(
        host=settings.host,
        port=settings.port,
        virtual_host=settings.vhost,
        credentials=pika.PlainCredentials(settings.username, settings.password),
        heartbeat=settings.heartbeat,
        ssl_options=ssl_options,
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=15,
        blocked_connection_timeout=60,
        client_properties={"connection_name": connection_name},
    )


class Session:
    """An open connection with one channel in confirm mode."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_publish_failed: Callable[[PublishFailure], None] | None = None
    ) -> None:
        self._loop = loop
        # Called once for every publish that ends in a failure, whoever awaits it (metrics).
        self._on_publish_failed = on_publish_failed
        self.connection: AsyncioConnection | None = None
        self.channel: Channel | None = None
        self.closed: asyncio.Future[str] = loop.create_future()
        self._waiting: set[asyncio.Future[Any]] = set()
        self.closed_error: Exception | None = None
        self._confirms: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._returned: dict[str, str] = {}
        self._next_tag = 1
        # Set while the broker blocks our publishes (connection.blocked: a memory or disk alarm).
        self.blocked_reason: str | None = None
        # Consumer tags the broker cancelled (queue deleted, stream leader lost).
        self.cancelled_consumers: set[str] = set()
        self.on_consumer_cancelled: Callable[[str], None] | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    async def open(
        cls, parameters: pika.ConnectionParameters, on_publish_failed: Callable[[PublishFailure], None] | None = None
    ) -> Session:
        session = cls(asyncio.get_running_loop(), on_publish_failed)
        opened = session._future()
        session.connection = AsyncioConnection(
            parameters,
            on_open_callback=lambda _connection: opened.set_result(None),
            on_open_error_callback=lambda _c, error: session._fail(BrokerUnavailable(_describe(error))),
            on_close_callback=lambda _c, reason: session._fail(BrokerUnavailable(_describe(reason))),
            custom_ioloop=session._loop,
        )
        session.connection.add_on_connection_blocked_callback(session._on_blocked)
        session.connection.add_on_connection_unblocked_callback(session._on_unblocked)
        await opened
        channel_opened = session._future()
        session.connection.channel(on_open_callback=channel_opened.set_result)
        session.channel = await channel_opened
        session.channel.add_on_close_callback(session._on_channel_closed)
        session.channel.add_on_return_callback(session._on_return)
        session.channel.add_on_cancel_callback(session._on_cancelled)
        confirming = session._future()
        session.channel.confirm_delivery(session._on_confirm, callback=confirming.set_result)
        await confirming
        return session

    def _future(self) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        if self.closed.done():
            future.set_exception(BrokerUnavailable(self.closed.result()))
            return future
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        return future

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a channel method that takes `callback=` and await that callback.

        A caller may stop waiting (a timeout cancels the future): the late answer is then dropped
        here rather than raising InvalidStateError inside pika's frame handling.
        """
        future = self._future()

        def answered(result: Any) -> None:
            if not future.done():
                future.set_result(result)

        method(*args, callback=answered, **kwargs)
        return await future

    async def sent(self, max_turns: int = 50) -> None:
        """Wait (a few loop turns at most) until pika has handed what it buffered to the kernel.

        pika's asyncio transport writes when the socket is next writable, not at once; a caller
        that must not answer before its publish is on the wire waits for this.
        """
        transport = getattr(self.connection, "_transport", None)  # pika keeps it private
        for _ in range(max_turns):
            if transport is None or not transport.get_write_buffer_size():
                return
            await asyncio.sleep(0)

    @property
    def is_open(self) -> bool:
        return not self.closed.done() and self.channel is not None and self.channel.is_open

    # -- topology ----------------------------------------------------------------------------
    async def declare_exchange(self, name: str, kind: str, durable: bool) -> None:
        assert self.channel is not None
        await self.call(self.channel.exchange_declare, exchange=name, exchange_type=kind, durable=durable)

    async def declare_queue(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        assert self.channel is not None
        await self.call(self.channel.queue_declare, queue=name, durable=True, arguments=arguments or {})

    async def queue_depth(self, name: str) -> tuple[int, int]:
        """(ready messages, consumers) of an existing queue, from a passive declare.

        Cheap for the broker and needs no management API credentials. A queue that does not exist
        closes the channel (404), and the session is re-established, which declares it again.
        """
        assert self.channel is not None
        frame = await self.call(self.channel.queue_declare, queue=name, passive=True)
        return frame.method.message_count, frame.method.consumer_count

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        assert self.channel is not None
        await self.call(self.channel.queue_bind, queue=queue, exchange=exchange, routing_key=routing_key)

    # -- publishing with confirms --------------------------------------------------------------
    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties
    ) -> asyncio.Future[None]:
        """Publish with `mandatory`; the future resolves when the broker confirms it.

        It fails with PublishFailed of kind UNROUTABLE when no queue took the message, NACKED when
        the broker refused it, and CONNECTION_LOST when the answer can no longer come.
        properties.message_id must be unique: it is how a returned message is recognised.
        """
        future: asyncio.Future[None] = self._loop.create_future()
        if not self.is_open:
            self._failed(future, PublishFailure.CONNECTION_LOST, "not connected")
            return future
        assert self.channel is not None
        self._confirms[self._next_tag] = (future, properties.message_id)
        self._next_tag += 1
        self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        return future

    async def publish_confirmed(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties, timeout: float
    ) -> None:
        """publish() and wait at most timeout seconds for the broker's answer (else TIMEOUT)."""
        future = self.publish(exchange, routing_key, body, properties)
        try:
            # On timeout the future is cancelled: a late answer finds it done and is dropped.
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            self.report_timeout()
            raise PublishFailed(PublishFailure.TIMEOUT, self.timeout_detail(timeout)) from None

    def report_timeout(self) -> None:
        """For callers that bound a publish() themselves: count the timeout like any failure."""
        if self._on_publish_failed is not None:
            self._on_publish_failed(PublishFailure.TIMEOUT)

    def _failed(self, future: asyncio.Future[None], kind: PublishFailure, detail: str) -> None:
        future.set_exception(PublishFailed(kind, detail))
        if self._on_publish_failed is not None:
            self._on_publish_failed(kind)

    def timeout_detail(self, timeout: float) -> str:
        if self.blocked_reason is not None:
            return f"the broker is applying flow control (connection blocked: {self.blocked_reason})"
        return f"no confirm from the broker within {timeout:g} s"

    def _on_return(self, _channel: Channel, method: Basic.Return, properties: BasicProperties, _body: bytes) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same message.
        if properties.message_id:
            self._returned[properties.message_id] = method.reply_text

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        if method.multiple:
            tags = [tag for tag in self._confirms if tag <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            future, message_id = self._confirms.pop(tag, (None, ""))
            # Popped whatever happens next: a publish whose waiter gave up (timed out, cancelled)
            # must not leave its basic.return behind.
            returned = self._returned.pop(message_id, None) if self._returned else None
            if future is None or future.done():
                continue
            if returned is not None:
                self._failed(future, PublishFailure.UNROUTABLE, returned)
            elif not acked:
                self._failed(future, PublishFailure.NACKED, "the broker refused the message")
            else:
                future.set_result(None)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked_reason = str(getattr(frame.method, "reason", "") or "resource alarm")
        log.warning("broker blocked our publishes", extra={"reason": self.blocked_reason})

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked_reason = None
        log.info("broker unblocked our publishes")

    # -- consuming -----------------------------------------------------------------------------
    async def consume(
        self,
        queue: str,
        on_message: Callable[[Channel, Basic.Deliver, BasicProperties, bytes], None],
        prefetch: int,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        assert self.channel is not None
        await self.call(self.channel.basic_qos, prefetch_count=prefetch)
        consume_ok = self._future()
        tag = self.channel.basic_consume(
            queue, on_message, auto_ack=False, exclusive=exclusive, arguments=arguments, callback=consume_ok.set_result
        )
        await consume_ok
        return tag

    def _on_cancelled(self, frame: Any) -> None:
        tag = frame.method.consumer_tag
        self.cancelled_consumers.add(tag)
        log.error("the broker cancelled our consumer", extra={"consumer_tag": tag})
        if self.on_consumer_cancelled is not None:
            self.on_consumer_cancelled(tag)

    async def cancel(self, consumer_tag: str) -> None:
        if self.is_open:
            assert self.channel is not None
            await self.call(self.channel.basic_cancel, consumer_tag)

    def ack(self, delivery_tag: int, multiple: bool = False) -> bool:
        if not self.is_open:
            return False
        assert self.channel is not None
        self.channel.basic_ack(delivery_tag, multiple=multiple)
        return True

    def reject(self, delivery_tag: int, requeue: bool) -> bool:
        """Give a delivery back (requeue) or drop it to the queue's dead-letter policy, if any."""
        if not self.is_open:
            return False
        assert self.channel is not None
        self.channel.basic_nack(delivery_tag, multiple=False, requeue=requeue)
        return True

    # -- closing -------------------------------------------------------------------------------
    def _on_channel_closed(self, _channel: Channel, reason: Exception) -> None:
        code = getattr(reason, "reply_code", 0)
        if code in (405, 406) and not any(text in str(reason) for text in PASSING_REFUSALS):
            self._fail(TopologyConflict(_describe(reason)))
        else:
            self._fail(BrokerUnavailable(_describe(reason)))
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    def _fail(self, error: Exception) -> None:
        if not self.closed.done():
            self.closed.set_result(str(error))
            self.closed_error = error
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(error)
        pending, self._confirms = self._confirms, {}
        for future, _message_id in pending.values():
            if not future.done():
                self._failed(future, PublishFailure.CONNECTION_LOST, str(error))

    def abort(self, reason: str) -> None:
        """Close the connection because of a local decision (it is then re-established)."""
        self._fail(BrokerUnavailable(reason))
        if self.connection is not None and not (self.connection.is_closed or self.connection.is_closing):
            self.connection.close()

    async def close(self) -> None:
        if self.connection is not None and not (self.connection.is_closed or self.connection.is_closing):
            self.connection.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout=5)


def _describe(error: Any) -> str:
    text = str(error) or type(error).__name__
    return text.replace("\n", " ")
