"""Worker failures go to one place: ``CostreconApp.report_error`` (a one-line notification,
the not-running screen, or a modal — never a traceback).

Textual's ``Worker.StateChanged`` does not bubble, so every widget or screen that starts workers
mixes this in to forward its failures.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.app.report_error(event.worker.error, context=event.worker.name)  # type: ignore[attr-defined]
