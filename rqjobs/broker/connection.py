"""The Redis connection: the configured ``redis_url``, or the embedded server.

Socket timeouts are always set: redis-py retries by default, and without a timeout a
dead server turns ``rqjobs enqueue`` into a hang instead of an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rqjobs.exceptions import BrokerUnavailable

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.config import Settings


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``: safe to log and show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def describe(settings: Settings) -> str:
    """Where Redis is, for messages: a masked URL or the embedded socket."""
    if settings.redis_url:
        return mask_url(settings.redis_url)
    from rqjobs.broker.embedded import socket_path_for

    return f"embedded redis-server at unix://{socket_path_for(settings.data_dir)}"


def connect(settings: Settings, *, start_embedded: bool = True) -> Redis:
    """A Redis client for the settings; starts the embedded server when needed."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": min(settings.redis_socket_timeout_s, 3.0),
        "health_check_interval": 30,
        # one quick retry of a dropped connection (a restarted server); no long backoff that
        # hides an outage, and no retry after a timeout: the command may have been received
        # (a write would land twice, e.g. a job pushed twice) and the wait would double
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if settings.redis_url:
        try:
            return Redis.from_url(settings.redis_url, **timeouts)
        except ValueError as exc:
            raise BrokerUnavailable(f"invalid redis_url {mask_url(settings.redis_url)}: {exc}") from None
    from rqjobs.broker.embedded import ensure_running, socket_path_for

    if start_embedded:
        socket_path = ensure_running(settings.data_dir, settings.redis_server)
    else:
        socket_path = socket_path_for(settings.data_dir)
    return Redis(unix_socket_path=str(socket_path), **timeouts)


def is_broker_error(exc: BaseException) -> bool:
    """A Redis connection problem (server down, restarted, unreachable, too slow)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError))


#: how long the did-it-land probe after a failed enqueue may take
LANDED_PROBE_TIMEOUT_S = 1.0


def job_landed(settings: Settings, job_id: str) -> bool:
    """After a failed enqueue: is the job in Redis anyway (a timed-out write that landed)?"""
    from dataclasses import replace

    from rqjobs.broker import rq_internals

    settings = replace(
        settings, redis_socket_timeout_s=min(settings.redis_socket_timeout_s, LANDED_PROBE_TIMEOUT_S)
    )
    probe = None
    try:
        probe = connect(settings, start_embedded=False)
        return rq_internals.job_exists(probe, job_id)
    except Exception:
        return False
    finally:
        if probe is not None:
            probe.close()
