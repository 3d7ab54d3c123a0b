"""A graceful stop of gunicorn without resets: the one module that uses gunicorn's internals.

On SIGTERM gunicorn's sync workers finish the request they hold and exit; connections already
queued on the listening socket (the kernel completed their handshake, the client sent its
request) are reset when the socket closes, and an nginx in front answers 502 for each (gunicorn
issues #2409, #3397). gunicorn has no hook between a graceful stop and closing its listeners, so:

- refuse_new_connections_on_stop(arbiter), from the when_ready hook, wraps the arbiter's stop():
  a graceful stop of the whole server first attaches a drop-all socket filter (Linux
  SO_ATTACH_FILTER) to the listeners. New connection attempts then go unanswered (clients
  retry, then find the port closed and are refused); the connections already queued stay.
- answer_queued_connections(worker), from the worker_exit hook, answers those queued
  connections in each stopping sync worker.

Beyond gunicorn's documented hooks and settings this relies on Arbiter.stop(graceful) and its
attributes LISTENERS, reexec_pid, master_pid and systemd, and on Worker.sockets and
SyncWorker.accept(listener). tests/api/test_graceful_stop.py checks each of them against the
installed gunicorn and fails loudly when an upgrade changes one.
"""

from __future__ import annotations

import array
import errno
import socket
import struct
from typing import Any

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux; SO_GET_FILTER is the same
# One classic BPF instruction, BPF_RET | BPF_K with k = 0: accept no bytes of any packet.
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)


def refuse_new_connections(sock: socket.socket) -> bool:
    """Drop new connection attempts on a listening socket; the queued ones stay acceptable."""
    program = array.array("B", _DROP_ALL)  # buffer_info(): its address, for the kernel to copy
    fprog = struct.pack("HP", 1, program.buffer_info()[0])  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:  # not Linux, or not allowed: keep gunicorn's own behaviour
        return False
    return True


def refusing(sock: socket.socket) -> bool:
    """True when a filter is attached (the whole server is stopping)."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, 64))
    except OSError:
        return False


def refuse_new_connections_on_stop(arbiter: Any) -> None:
    """Wrap the arbiter's stop() so a graceful stop refuses new connections first."""
    stop = arbiter.stop

    def stop_gracefully(graceful: bool = True) -> None:
        # Only when these sockets are this server's alone (gunicorn's own test before it unlinks
        # them): after a USR2 re-exec the new master shares them and must keep accepting.
        own_sockets = (
            arbiter.reexec_pid == arbiter.master_pid == 0
            and not arbiter.systemd
            and not arbiter.cfg.reuse_port
        )
        if graceful and own_sockets:
            for listener in arbiter.LISTENERS:
                refuse_new_connections(listener.sock)
        stop(graceful)

    arbiter.stop = stop_gracefully


def answer_queued_connections(worker: Any) -> int:
    """In a stopping sync worker: answer the connections still queued on its listeners."""
    from gunicorn.workers.sync import SyncWorker

    if not isinstance(worker, SyncWorker):
        return 0
    answered = 0
    for listener in worker.sockets:
        if not refusing(listener.sock):
            continue  # only this worker stops (max_requests, HUP, TTOU): the others accept
        listener.setblocking(False)
        while True:
            try:
                worker.accept(listener)  # accept + handle one request
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue  # that client gave up while queued
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break  # nothing queued any more
                raise
            answered += 1
    return answered
