"""Webhooks for operators: which endpoint wants what, and the outbox by hand.

The events themselves are written by the store as changes happen
(:mod:`bounced.store.outbox`) and delivered by the daemon (:mod:`bounced.daemon.webhooks`);
``bounced webhooks list|retry|replay`` look at and steer the deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence

from bounced.config import Config, WebhookConfig
from bounced.model import EventType
from bounced.store import Store


def routes(webhooks: Sequence[WebhookConfig]) -> dict[str, tuple[str, ...]]:
    """Event type -> the endpoints (URLs) that want it: what the store writes for."""
    found: dict[str, list[str]] = {}
    for webhook in webhooks:
        for event in webhook.events or tuple(kind.value for kind in EventType):
            found.setdefault(event, []).append(webhook.url)
    return {event: tuple(dict.fromkeys(urls)) for event, urls in found.items()}


def subscribe(store: Store, config: Config) -> Store:
    """Have ``store`` write the events ``config``'s webhooks want; returns it."""
    store.outbox.subscribe(routes(config.webhooks))
    return store
