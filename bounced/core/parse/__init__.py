"""Parse stage: the bytes of one message -> a :class:`~bounced.model.BounceReport`.

The order of recognition follows how specific each format is, the most explicit first:

1. an RFC 5965 feedback report (or a provider's complaint forward)  -> ``feedback``;
2. an RFC 3464 / RFC 6533 delivery status part                        -> per ``Action``;
3. a human-readable bounce from a mail system (vendor prose)          -> ``failure``/``delay``;
4. an RFC 3834 automatic reply                                        -> ``autoreply``;
5. anything else                                                      -> ``not_bounce``.

:func:`parse_message` never raises: broken input is described in ``problems``.
"""

from __future__ import annotations

from bounced.core.parse.message import parse_message

__all__ = ["parse_message"]
