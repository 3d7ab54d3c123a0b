"""Direct, bounded looks at the Redis broker: is it up, and which task messages does it hold.

Both work without a Celery app, so the API's health check and the worker's reconciler can call
them cheaply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import redis

from core.tasks import RETRAIN_QUEUE

log = logging.getLogger(__name__)

# kombu's Redis transport keeps delivered-but-unacknowledged messages in this hash.
UNACKED_KEY = "unacked"


def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
    )


def broker_ok(url: str, timeout: float = 0.5) -> bool:
    """True when the broker at url answers a PING within timeout seconds."""
    client = _client(url, timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _task_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, list) and message:  # unacked entries are [message, exchange, key]
        message = message[0]
    if not isinstance(message, dict):
        return None
    return (message.get("headers") or {}).get("id")


def pending_task_ids(
    url: str, queues: Iterable[str] = (RETRAIN_QUEUE,), timeout: float = 2.0
) -> set[str] | None:
    """Task ids of messages waiting in queues or delivered but not yet acknowledged.

    None when the broker cannot be read (down, or not Redis): callers must then assume
    nothing, rather than that every message was lost.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = _client(url, timeout)
    try:
        found: set[str] = set()
        for queue in queues:
            found.update(filter(None, map(_task_id, client.lrange(queue, 0, -1))))
        found.update(filter(None, map(_task_id, client.hvals(UNACKED_KEY))))
        return found
    except (redis.RedisError, OSError) as exc:
        log.warning("cannot list broker messages: %s", exc)
        return None
    finally:
        client.close()
