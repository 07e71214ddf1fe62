"""Operator workflows over the store: processing, quarantine actions, reprocess, rules
administration, explain, reports, DNS evidence, ingest.

Each workflow asks :mod:`bounced.store` in domain terms and decides with the pure
:mod:`bounced.core`; the command line (:mod:`bounced.cli`) and the daemon
(:mod:`bounced.daemon`) only call them.
"""

from __future__ import annotations


class RequestError(ValueError):
    """An operator request that cannot be carried out (no such rule, an invalid rule);
    the message says why."""
