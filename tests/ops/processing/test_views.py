"""The operator views (docs/schema.md): daily_summary, to_qualify, suppression_list."""

from __future__ import annotations


def test_daily_summary_counts_bounces_and_addresses_per_day_type_reason_domain(
        db, mail_file, bounced, sql):
    paths = [
        mail_file("hard-user-unknown", address="a@one.example"),
        mail_file("hard-user-unknown", address="b@one.example"),
        mail_file("hard-user-unknown", address="b@one.example"),
        mail_file("soft-mailbox-full", address="c@two.example"),
    ]
    for path in paths[:3]:
        bounced(["ingest", "--db", str(db), "--at", "2026-11-20T10:00:00Z", str(path)])
    bounced(["ingest", "--db", str(db), "--at", "2026-11-21T23:59:59Z", str(paths[3])])
    assert sql("SELECT day, failure_type, reason, domain, bounces, addresses "
               "FROM daily_summary ORDER BY day") == [
        ("2026-11-20", "hard", "User unknown", "one.example", 3, 2),
        ("2026-11-21", "soft", "Mailbox full", "two.example", 1, 1),
    ]


def test_to_qualify_lists_texts_nobody_qualified_most_frequent_first(
        db, mail_file, bounced, sql):
    for index in range(3):
        bounced(["ingest", "--db", str(db), str(mail_file("undefined",
                                                           address=f"u{index}@x.example"))])
    bounced(["ingest", "--db", str(db), str(mail_file("hard-user-unknown"))])
    rows = sql("SELECT text, first_text, occurrences FROM to_qualify")
    assert rows[0][0] == "zorglub frobnicated the envelope of <*>"
    assert "u0@x.example" in rows[0][1]
    assert rows[0][2] == 3
    # An operator's decision takes the text out of the queue.
    sql("UPDATE qualification SET status = 'keep', failure_type = 'hard', "
        "reason_code = 1 WHERE text = ?", (rows[0][0],))
    assert rows[0][0] not in {text for text, *_ in sql("SELECT text FROM to_qualify")}
    bounced(["ingest", "--db", str(db), str(mail_file("undefined", address="k@x.example"))])
    assert sql("SELECT failure_type, reason_code, qualified_by FROM bounces "
               "WHERE recipient = 'k@x.example'") == [("hard", 1, sql(
                   "SELECT 'table:' || id FROM qualification WHERE text = ?",
                   (rows[0][0],))[0][0])]
    assert sql("SELECT state FROM addresses WHERE address = 'k@x.example'") == [("quarantine",)]


def test_occurrences_are_capped_at_100000(db, mail_file, bounced, sql):
    bounced(["ingest", "--db", str(db), str(mail_file("undefined", address="a@x.example"))])
    sql("UPDATE qualification SET occurrences = 99999")
    for index in range(2):
        bounced(["ingest", "--db", str(db),
                 str(mail_file("undefined", address=f"n{index}@x.example"))])
    assert sql("SELECT occurrences FROM qualification") == [(100000,)]
