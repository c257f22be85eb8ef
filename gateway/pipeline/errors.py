"""Dispositions a pipeline step raises; the SMTP edge (and the webmail) turn them into replies."""

from __future__ import annotations


class RejectMessage(Exception):
    """Refuse the whole message with this SMTP status; nothing of it is kept."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status

    @property
    def code(self) -> int:
        return int(self.status[:3])
