"""A paho network loop that stops reading while the consumer has no room: real flow control.

Receive Maximum should make the broker stop sending once that many QoS 1
messages are unacknowledged, but Mosquitto 2.0.11 overruns it while draining
a backlog (measured: up to ~20,000 unacknowledged with Receive Maximum 1000,
as acks arrive). A consumer that buffers what arrives must then either grow
without bound or drop messages it has not acknowledged, and a dropped
message is only redelivered after the next reconnect, when it is stale.

So we run paho's I/O ourselves (``loop_read``/``loop_write``/``loop_misc``)
and leave the socket unread while ``has_room()`` is false. TCP flow control
then holds the broker back, while acknowledgements, publishes and keep-alive
pings keep flowing, so the connection stays healthy even when the consumer
is blocked for a long time (an InfluxDB outage).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from formcheck_runtime.paho_internals import LeanReceiveClient, note_bytes_received, wake_socket

log = logging.getLogger(__name__)

_SELECT_TIMEOUT_S = 0.05
_PACKETS_PER_WAKE = 256  # then writes (acks) and keep-alive get their turn


class FlowControlledLoop:
    """Owns the network thread of one paho client set up with ``connect_async``."""

    def __init__(self, client: LeanReceiveClient, has_room: Callable[[], bool], reconnect_min_s: float,
                 reconnect_max_s: float, name: str = "mqtt-loop") -> None:
        self._client = client
        self._has_room = has_room
        self._min = reconnect_min_s
        self._max = reconnect_max_s
        self._stop = threading.Event()
        self._disconnecting = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def disconnect(self) -> None:
        """Send DISCONNECT (from this loop's thread, like every write) and do not reconnect afterwards."""
        self._disconnecting.set()
        self._client.disconnect()

    def wait_disconnected(self, timeout: float) -> bool:
        """After :meth:`disconnect`: wait until the DISCONNECT went out and the socket closed."""
        deadline = time.monotonic() + timeout
        while self._client.socket() is not None and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._client.socket() is None

    def _run(self) -> None:
        delay = self._min
        unaccepted = False  # a connection is open (or was) that the broker has not accepted with a CONNACK
        while not self._stop.is_set():
            if self._client.socket() is None:
                if self._disconnecting.is_set():  # closed on request: wait for stop(), never reconnect
                    self._stop.wait(_SELECT_TIMEOUT_S)
                    continue
                if unaccepted:
                    # Refused (wrong password, not authorised): the broker answers and closes, so reconnect()
                    # succeeds. Back off as for an unreachable broker; retrying at once made ~3,500 CONNECTs a
                    # second against the production config.
                    unaccepted = False
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._max)
                    continue
                try:
                    self._client.reconnect()
                except (OSError, ValueError) as exc:
                    text = str(exc) or type(exc).__name__
                    if text != self._last_error:
                        log.warning("cannot reach the broker (%s); retrying with backoff", text)
                        self._last_error = text
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._max)
                    continue
                self._last_error = None
                unaccepted = True
            self._pump(read=self._has_room())
            if unaccepted and self._client.is_connected():
                unaccepted = False
                delay = self._min

    def _pump(self, read: bool) -> None:
        client = self._client
        sock = client.socket()
        if sock is None:
            return
        wake = wake_socket(client)  # readable when other threads queued a packet
        rlist: list[Any] = [wake] if wake is not None else []
        if read:
            rlist.append(sock)
        wlist: list[Any] = [sock] if client.want_write() else []
        # Bytes select() cannot see: decrypted TLS records, and what the client's buffered reads already hold.
        pending = read and (client.buffered() > 0 or bool(getattr(sock, "pending", lambda: 0)()))
        try:
            readable, _, _ = select.select(rlist, wlist, [], 0 if pending else _SELECT_TIMEOUT_S)
        except (OSError, ValueError):
            readable = []
        if wake is not None and wake in readable:
            with contextlib.suppress(OSError):
                wake.recv(10_000)
        if pending or sock in readable:
            client.loop_read()
            packets = 1
            while (packets < _PACKETS_PER_WAKE and client.buffered() > 0 and client.socket() is not None
                   and self._has_room()):
                client.loop_read()
                packets += 1
        if not read:
            self._note_life(sock, client.buffered() > 0)
        if client.socket() is not None and client.want_write():
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()

    def _note_life(self, sock: Any, buffered: bool) -> None:
        """While reads are held back, bytes waiting for us prove the broker is alive: tell paho's keep-alive.

        paho closes the connection when nothing was read for a keep-alive after its PINGREQ, and the PINGRESP
        sits unread behind the messages we are not taking yet: an InfluxDB outage longer than two keep-alives
        cost a disconnect (Last Will 'offline'), a reconnect and redeliveries, again and again. PINGREQs keep
        going out, so the broker keeps us too. A broker that dies meanwhile is noticed once reading resumes.
        """
        if not buffered:
            try:
                waiting, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                return
            if not waiting:
                return
        note_bytes_received(self._client)
