"""deploy/graceful_stop.py against the installed gunicorn and the kernel.

The module relies on gunicorn internals that no hook exposes; these tests check each one on the
installed version, so an upgrade that changes them fails here, loudly, instead of silently
turning a graceful stop back into connection resets. The behaviour end to end is proven by
tests/reliability/test_faults.py (SIGTERM under load) and tests/api/test_gunicorn.py.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker
from gunicorn.workers.sync import SyncWorker

from deploy import graceful_stop


class _App(BaseApplication):
    """The smallest gunicorn application: enough to build a real Arbiter."""

    def load_config(self) -> None:
        self.cfg.set("bind", "127.0.0.1:0")

    def load(self):
        return lambda environ, start_response: []


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def _connect(port: int, timeout: float) -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(timeout)
    client.connect(("127.0.0.1", port))
    return client


def test_the_filter_refuses_new_connections_and_keeps_the_queued_ones(listener):
    port = listener.getsockname()[1]
    queued = _connect(port, 2.0)
    assert not graceful_stop.refusing(listener)
    assert graceful_stop.refuse_new_connections(listener), "SO_ATTACH_FILTER was refused"
    assert graceful_stop.refusing(listener)
    # The kernel drops the new connection's SYN: the client waits and retries, never reset.
    with pytest.raises(TimeoutError):
        _connect(port, 0.5)
    accepted, _ = listener.accept()  # the connection queued before the filter still arrives
    queued.sendall(b"ping")
    assert accepted.recv(4) == b"ping"
    for sock in (accepted, queued):
        sock.close()


def test_the_arbiter_still_has_what_the_stop_wrapper_uses(listener):
    arbiter = Arbiter(_App())
    # Read before a graceful stop to tell a server's own sockets from re-exec'd shared ones.
    assert arbiter.reexec_pid == 0 and arbiter.master_pid == 0 and arbiter.systemd is False
    assert arbiter.LISTENERS == [] and arbiter.cfg.reuse_port is False
    stop = inspect.signature(Arbiter.stop)
    assert list(stop.parameters) == ["self", "graceful"], stop
    assert stop.parameters["graceful"].default is True
    # A SIGTERM ends in halt(), which must go through the (wrapped) instance attribute stop.
    assert "self.stop()" in inspect.getsource(Arbiter.halt)
    calls: list[bool] = []
    arbiter.stop = calls.append  # what the wrapper wraps: the instance attribute
    arbiter.LISTENERS = [SimpleNamespace(sock=listener)]  # gunicorn's listeners wrap a socket
    graceful_stop.refuse_new_connections_on_stop(arbiter)
    arbiter.stop()
    assert calls == [True] and graceful_stop.refusing(listener)


def test_the_sync_worker_still_accepts_one_connection_per_call():
    assert "sockets" in inspect.signature(Worker.__init__).parameters
    assert "self.sockets = sockets" in inspect.getsource(Worker.__init__)
    accept = inspect.signature(SyncWorker.accept)
    assert list(accept.parameters) == ["self", "listener"], accept
    source = inspect.getsource(SyncWorker.accept)
    assert "listener.accept()" in source and "self.handle(" in source
