"""Redis pub/sub fan-out of committed events: fast, lossy, never the truth.

PostgreSQL is the truth; Redis only makes the news travel fast. A message on a topic is one
committed :class:`~aggregates.envelope.RecordedEvent` as JSON, published after its commit. Redis
pub/sub drops messages while a subscriber is away, so consumers track the last position they saw
(:class:`GapDetector`) and read anything they missed from the log. That is why a lost connection
surfaces at once as :class:`BusUnavailable` and is never papered over by a silent reconnect: a
reconnect would hide exactly the messages the consumer must now fetch from the log.

Every channel is ``<namespace>:<topic>``, so several deployments or test runs share one Redis.
This module is the one seam where redis-py's exceptions are caught and translated.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar, get_args

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aggregates.envelope import RecordedEvent
from aggregates.events import AnyEvent, Code, event_type
from aggregates.streams import Topic, topic_for

_log = logging.getLogger(__name__)

TOPICS: tuple[Topic, ...] = get_args(Topic)
#: Topics that carry committed events; ``health`` carries heartbeats.
EVENT_TOPICS: tuple[Topic, ...] = tuple(t for t in TOPICS if t != "health")

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

#: ``on_malformed(source, reason)``: ``source`` is the topic, ``reason`` a short stable code
#: (``json``, ``schema``, ``type_mismatch``, ``wrong_topic``), as in
#: ``claire_malformed_messages_total{source, reason}``.
MalformedCallback = Callable[[str, str], None]


class BusUnavailable(Exception):
    """Redis cannot be reached or the subscription was lost: read from the log instead."""


class MalformedMessage(ValueError):
    """A bus payload that is not a valid message for its topic; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A service's sign of life on ``health``: wall-clock time, never recorded in the ledger.

    ``service`` is a :data:`~aggregates.events.Code` and the ``instance`` at most
    :data:`INSTANCE_MAX` characters, so whatever the alerts service concludes from a beat fits
    a ``ServiceAlertRaised``; a beat that does not is malformed (counted and skipped).
    """

    service: Code
    at: datetime
    payload: dict[str, str] = {}


class _WireEvent(RecordedEvent, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """RecordedEvent as read off the wire (its fields, by inheritance), with ``event`` typed as
    the tagged union so the decode is strict."""

    event: AnyEvent


_encoder = msgspec.json.Encoder(decimal_format="string")
_wire_decoder = msgspec.json.Decoder(_WireEvent)
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)
#: The longest ``instance`` a heartbeat may name (host and process id fit many times over).
INSTANCE_MAX = 200


def encode_recorded(recorded: RecordedEvent) -> bytes:
    """The wire form of a committed event: its JSON with the event's tag inside."""
    return _encoder.encode(recorded)


def decode_recorded(data: bytes, *, topic: str | None = None) -> RecordedEvent:
    """Strictly decode one bus payload to a typed RecordedEvent, or raise MalformedMessage.

    Beyond the types it checks that ``event_type`` is the event's own tag and, given ``topic``,
    that the event belongs on the topic it arrived on.
    """
    try:
        wire = _wire_decoder.decode(data)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: test it first
        raise MalformedMessage("schema", str(error)) from error
    except msgspec.DecodeError as error:
        raise MalformedMessage("json", str(error)) from error
    tag = event_type(wire.event)
    if wire.event_type != tag:
        raise MalformedMessage("type_mismatch", f"event_type {wire.event_type!r}, event is {tag!r}")
    if wire.position < 1:
        raise MalformedMessage("schema", f"position must be >= 1, got {wire.position}")
    if topic is not None and topic_for(wire.event) != topic:
        raise MalformedMessage("wrong_topic", f"{tag} does not belong on {topic!r}")
    return RecordedEvent(**{name: getattr(wire, name) for name in wire.__struct_fields__})


def decode_heartbeat(data: bytes) -> Heartbeat:
    """Strictly decode a heartbeat, or raise MalformedMessage."""
    try:
        beat = _heartbeat_decoder.decode(data)
    except msgspec.ValidationError as error:
        raise MalformedMessage("schema", str(error)) from error
    except msgspec.DecodeError as error:
        raise MalformedMessage("json", str(error)) from error
    if len(beat.payload.get("instance", "")) > INSTANCE_MAX:
        raise MalformedMessage("schema", f"instance longer than {INSTANCE_MAX} characters")
    return beat


# --------------------------------------------------------------------------- the bus

T = TypeVar("T")


def _no_retry_client(url: str, name: str) -> aioredis.Redis:
    """A client that never reconnects behind our back (see the module docstring).

    Its connections carry ``name`` (CLIENT LIST), so an operator can tell them apart.
    """
    return aioredis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=5.0,
        health_check_interval=0,
        client_name=name,
    )


class RedisBus:
    """Publishes committed events and heartbeats; hands out subscriptions."""

    def __init__(
        self,
        url: str,
        namespace: str,
        client: aioredis.Redis,
        *,
        on_malformed: MalformedCallback | None = None,
        liveness_interval_s: float = 5.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._client = client
        self._on_malformed = on_malformed
        self._liveness_interval_s = liveness_interval_s
        self._subscriptions = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        namespace: str,
        *,
        on_malformed: MalformedCallback | None = None,
        liveness_interval_s: float = 5.0,
    ) -> RedisBus:
        """Connect and check Redis answers; raises BusUnavailable if it does not.

        ``liveness_interval_s``: a subscriber idle for this long pings Redis, and gives up with
        BusUnavailable when nothing comes back within two more intervals (a hung connection).
        """
        if not _NAMESPACE.match(namespace):
            raise ValueError(f"namespace must match {_NAMESPACE.pattern}, got {namespace!r}")
        if liveness_interval_s <= 0:
            raise ValueError(f"liveness_interval_s must be > 0, got {liveness_interval_s}")
        client = _no_retry_client(url, f"{namespace}:pub")
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            await client.aclose()
            raise BusUnavailable(f"redis at {_safe(url)} does not answer: {error}") from error
        return cls(
            url,
            namespace,
            client,
            on_malformed=on_malformed,
            liveness_interval_s=liveness_interval_s,
        )

    def channel(self, topic: Topic) -> str:
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; topics are {', '.join(TOPICS)}")
        return f"{self.namespace}:{topic}"

    async def publish(self, recorded_events: Iterable[RecordedEvent]) -> int:
        """Fan committed events out, in order, in one round trip; returns how many were sent."""
        pipe = self._client.pipeline(transaction=False)
        count = 0
        for recorded in recorded_events:
            pipe.publish(self.channel(topic_for(recorded.event)), encode_recorded(recorded))
            count += 1
        if count:
            try:
                await pipe.execute()
            except (RedisError, OSError) as error:
                raise BusUnavailable(f"publish to redis failed: {error}") from error
        return count

    async def publish_heartbeat(
        self, service: str, payload: Mapping[str, str] | None = None, *, at: datetime | None = None
    ) -> Heartbeat:
        """Announce that ``service`` is alive on ``health``."""
        beat = Heartbeat(service=service, at=at or datetime.now(UTC), payload=dict(payload or {}))
        try:
            await self._client.publish(self.channel("health"), _encoder.encode(beat))
        except (RedisError, OSError) as error:
            raise BusUnavailable(f"heartbeat to redis failed: {error}") from error
        return beat

    async def subscribe(self, topics: Sequence[Topic]) -> Subscription[RecordedEvent]:
        """Subscribe to event topics; returns once Redis confirmed, so later publishes arrive."""
        for topic in topics:
            if topic not in EVENT_TOPICS:
                raise ValueError(f"{topic!r} is not an event topic; use subscribe_health()")
        return await self._subscribe(topics, lambda data, topic: decode_recorded(data, topic=topic))

    async def subscribe_health(self) -> Subscription[Heartbeat]:
        """Subscribe to the heartbeats on ``health``."""
        return await self._subscribe(("health",), lambda data, topic: decode_heartbeat(data))

    async def _subscribe(
        self, topics: Sequence[Topic], decode: Callable[..., T]
    ) -> Subscription[T]:
        if not topics:
            raise ValueError("subscribe to at least one topic")
        by_channel = {self.channel(topic): topic for topic in topics}
        self._subscriptions += 1
        name = f"{self.namespace}:sub:{self._subscriptions}"
        client = _no_retry_client(self.url, name)
        pubsub = client.pubsub()
        subscription = Subscription(
            client, pubsub, by_channel, decode, self._on_malformed, self._liveness_interval_s
        )
        subscription.client_name = name
        try:
            await subscription._start()
        except BaseException:
            await subscription.close()
            raise
        return subscription

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RedisBus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Subscription(Generic[T]):
    """An async iterator of decoded messages from one pub/sub connection.

    Malformed payloads are logged, counted (``malformed`` and the callback) and skipped.
    Losing the connection, or Redis going silent, raises BusUnavailable from ``__anext__``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        pubsub: PubSub,
        by_channel: dict[str, Topic],
        decode: Callable[[bytes, str], T],
        on_malformed: MalformedCallback | None,
        liveness_interval_s: float,
    ) -> None:
        self._client = client
        self._pubsub = pubsub
        self._by_channel = by_channel
        self._decode = decode
        self._on_malformed = on_malformed
        self._interval = liveness_interval_s
        self._closed = False
        self.malformed = 0
        self.client_name = ""

    async def _start(self) -> None:
        pending = set(self._by_channel)
        try:
            await self._pubsub.subscribe(*self._by_channel)
            while pending:
                message = await self._next_raw()
                if message["type"] == "subscribe":
                    pending.discard(_text(message["channel"]))
        except (RedisError, OSError) as error:
            raise BusUnavailable(f"subscribe to redis failed: {error}") from error

    async def _next_raw(self) -> dict[str, object]:
        """The next message of any kind; pings when idle, gives up when Redis stays silent."""
        silent_for = 0.0
        pinged = False
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            started = loop.time()
            message = await self._pubsub.get_message(timeout=self._interval)
            if message is not None:
                return message
            silent_for += loop.time() - started
            if silent_for >= 3 * self._interval and pinged:
                raise BusUnavailable(f"redis sent nothing for {silent_for:.1f}s, not even a pong")
            if not pinged:
                await self._pubsub.ping()
                pinged = True

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        while True:
            try:
                message = await self._next_raw()
            except (RedisError, OSError) as error:
                raise BusUnavailable(f"lost the redis subscription: {error}") from error
            if message["type"] != "message":
                continue  # pongs to our liveness pings, (un)subscribe confirmations
            channel = _text(message["channel"])
            topic = self._by_channel.get(channel)
            if topic is None:
                continue
            data = message["data"]
            try:
                raw = data if isinstance(data, bytes) else _text(data).encode()
                return self._decode(raw, topic)
            except MalformedMessage as error:
                self.malformed += 1
                _log.warning("skipped a malformed message on %s: %s", channel, error)
                if self._on_malformed is not None:
                    self._on_malformed(topic, error.reason)

    async def close(self) -> None:
        """Unsubscribe and drop the connection; safe to call twice or after a failure."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._pubsub.aclose()
        except (RedisError, OSError):
            _log.debug("closing a broken pubsub connection", exc_info=True)
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            _log.debug("closing a broken redis client", exc_info=True)

    aclose = close  # so contextlib.aclosing (and pipeline.queues.pump) can close it

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def raise_if_cancelled() -> None:
    """End the current task if a cancel was asked for but swallowed on the way.

    redis-py sends with ``asyncio.wait_for``, which on Python 3.11 drops a cancel that arrives
    just as the send completes: the task is marked ``cancelling()`` yet runs on. A loop over the
    bus calls this at every turn, so a service told to stop does stop (a refused start once hung
    forever this way).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _safe(url: str) -> str:
    """A URL fit for a log line: no password."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)
