"""Optional delivery of set summaries to members' phones or mail through apprise.

Runs in its own thread behind a bounded queue: a slow or failing channel is
retried a few times with backoff and logged, and never blocks or slows
aggregation (when the queue is full the oldest pending delivery is dropped
and counted).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from formcheck_aggregator.config import NotificationSection
from formcheck_protocol.messages import SetMessage
from formcheck_runtime.queues import DropQueue, QueueClosed

log = logging.getLogger(__name__)

Sender = Callable[[list[str], str, str], bool]


def apprise_sender() -> Sender | None:
    """A sender backed by apprise, or ``None`` when the package is not installed."""
    try:
        apprise = importlib.import_module("apprise")
    except ImportError:
        return None

    def send(urls: list[str], title: str, body: str) -> bool:
        app = apprise.Apprise()
        for url in urls:
            app.add(url)
        return bool(app.notify(title=title, body=body))

    return send


def summary_text(s: SetMessage) -> tuple[str, str]:
    """Title and body a member reads on a phone."""
    title = f"{s.exercise.capitalize()}: {s.reps} reps, grade {s.grade}"
    lines = [f"Average score {s.score_mean:.0f}, weakest rep {s.score_min:.0f}."]
    if s.main_fault:
        lines.append(f"Watch out: {s.main_fault}.")
    if not s.complete:
        lines.append("The set was cut short (the station went offline).")
    return title, " ".join(lines)


@dataclass
class NotifierStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class Notifier:
    def __init__(self, config: NotificationSection, sender: Sender | None = None) -> None:
        self.config = config
        self.stats = NotifierStats()
        self._sender = sender if sender is not None else (apprise_sender() if config.apprise else None)
        if config.apprise and self._sender is None:
            log.warning("notifications.apprise is configured but the 'apprise' package is not installed")
        self._queue: DropQueue[tuple[list[str], str, str]] = DropQueue(config.queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def start(self) -> Notifier:
        if self._sender is not None:
            self._thread.start()
        return self

    def notify(self, s: SetMessage) -> None:
        urls = [u.get_secret_value() for u in self.config.apprise.get(s.member, [])]
        if not urls or self._sender is None:
            return
        title, body = summary_text(s)
        if not self._queue.put((urls, title, body)):
            self.stats.dropped = self._queue.dropped
            log.warning("notification queue full: %d deliveries dropped", self._queue.dropped)

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        assert self._sender is not None
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except QueueClosed:
                return
            if item is None:
                continue
            urls, title, body = item
            delay = self.config.retry_delay_s
            for attempt in range(self.config.retries + 1):
                try:
                    ok = self._sender(urls, title, body)
                except Exception as exc:  # noqa: BLE001 - a plugin's failure must never reach aggregation
                    log.warning("notification delivery raised %s", exc)
                    ok = False
                if ok:
                    self.stats.sent += 1
                    break
                if attempt == self.config.retries or self._stop.wait(delay):
                    self.stats.failed += 1
                    log.warning("notification %r not delivered after %d attempts", title, attempt + 1)
                    break
                delay *= 2
