"""bounced: the return-path mailbox of an MTA.

Bounces come in over SMTP/LMTP (or ``bounced ingest``), go through the pipeline
``receive -> parse -> normalize -> qualify -> policy -> store`` and end up as per-recipient
verdicts and address quarantine states in one SQLite database.
"""

__version__ = "0.1.0"
