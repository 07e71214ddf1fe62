"""``sent_messages``: what a sending platform registered it sent (``POST /v1/messages``).

An SMS status report names the SMS by the SMSC's message id (the one ``submit_sm_resp``
gave the platform), not always by the number it went to: a receipt with no source
address, or whose source the SMSC rewrote, still finds its number here. The key is the
channel and the id; a re-registration of an id replaces its recipient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.times import format_time
from bounced.model import Channel

if TYPE_CHECKING:
    from bounced.store import Store


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message as the platform registered it (its recipient in canonical form)."""

    channel: Channel
    id: str
    recipient: str


class SentMessages:
    """Registered messages, by channel and id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def register(self, messages: Sequence[SentMessage], at: datetime) -> int:
        """Record (or replace) each message in one transaction; returns how many."""
        with self._store.atomic():
            self._store.conn.executemany(
                "INSERT INTO sent_messages (channel, id, recipient, registered_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(channel, id) DO UPDATE SET "
                "recipient = excluded.recipient, registered_at = excluded.registered_at",
                [(m.channel.value, m.id, m.recipient, format_time(at)) for m in messages],
            )
        return len(messages)

    def recipient(self, channel: Channel, message_id: str) -> str | None:
        """The recipient registered for ``message_id``, if any."""
        row = self._store.conn.execute(
            "SELECT recipient FROM sent_messages WHERE channel = ? AND id = ?",
            (channel.value, message_id),
        ).fetchone()
        return str(row[0]) if row is not None else None
