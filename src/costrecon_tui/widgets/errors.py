"""Failures go to one place: ``CostreconApp.report_error`` (a one-line notification, the
not-running screen, or the error panel — never a traceback, never the end of the session).

Textual's ``Worker.StateChanged`` does not bubble, so every widget or screen that starts workers
mixes in :class:`ReportsWorkerErrors` to forward its failures. :class:`StaysUp` catches what a
message handler or key action raises: Textual would otherwise stop that widget's message loop and
end the app (``MessagePump._process_messages_loop`` breaks on the first exception).
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.worker import Worker, WorkerState


class StaysUp:
    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except Exception as exc:
            app: Any = self.app  # type: ignore[attr-defined]
            where = f"{type(self).__name__} handling {type(message).__name__}"
            if not hasattr(app, "report_unexpected") or not app.report_unexpected(exc, where):
                raise


class ReportsWorkerErrors(StaysUp):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.app.report_error(event.worker.error, context=event.worker.name)  # type: ignore[attr-defined]
