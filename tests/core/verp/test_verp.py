"""Signed VERP: tokens that name the recipient and cannot be forged without the secret."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bounced.cli import main
from bounced.config import Config, DatabaseConfig, VerpConfig
from bounced.core.verp import (
    VerpProblem,
    bounce_trust,
    encode_address,
    encode_token,
    envelope_token,
    split_local,
    token_of,
    verify_token,
)
from bounced.daemon.worker import Worker
from bounced.model import IncomingMessage
from bounced.store import Store
from tests.paths import DATA

SECRET = "s3cret-for-tests"
SAMPLE = DATA / "mta-lab" / "postfix-01-user-unknown-failed.eml"
#: The recipient the sample DSN reports as unknown.
SAMPLE_RECIPIENT = "unknown-user@rcpt.test"


def test_a_signed_token_verifies_and_gives_back_the_recipient() -> None:
    token = encode_token("Jane.Doe@Example.org", SECRET)
    check = verify_token(token, SECRET)
    assert check.verified and check.problem is None
    assert check.recipient == "jane.doe@example.org"


def test_the_return_path_puts_the_token_after_the_separator() -> None:
    address = encode_address("jane@example.org", "bounces@bounce.example", secret=SECRET)
    assert address.startswith("bounces+jane=example.org=") and address.endswith("@bounce.example")
    token = token_of(address)
    assert token is not None and verify_token(token, SECRET).recipient == "jane@example.org"


def test_a_token_survives_a_change_of_case_by_an_mta() -> None:
    token = encode_token("jane@example.org", SECRET)
    assert verify_token(token.upper(), SECRET).verified


def test_local_parts_with_separators_in_them_round_trip() -> None:
    for recipient in ("a=b@example.org", "first+tag@example.org", "x-y.z@sub.example.co.uk"):
        assert verify_token(encode_token(recipient, SECRET), SECRET).recipient == recipient


def test_another_secret_does_not_verify() -> None:
    check = verify_token(encode_token("jane@example.org", "other"), SECRET)
    assert (check.verified, check.problem) == (False, VerpProblem.BAD_SIGNATURE)


def test_a_token_whose_recipient_was_changed_does_not_verify() -> None:
    token = encode_token("jane@example.org", SECRET)
    forged = token.replace("jane", "john", 1)
    check = verify_token(forged, SECRET)
    assert (check.verified, check.problem, check.recipient) == (
        False,
        VerpProblem.BAD_SIGNATURE,
        "john@example.org",
    )


def test_an_unsigned_token_is_refused_when_a_secret_is_configured() -> None:
    check = verify_token(encode_token("jane@example.org"), SECRET)
    assert (check.verified, check.problem) == (False, VerpProblem.UNSIGNED)


def test_without_a_secret_the_recipient_is_read_but_not_verified() -> None:
    check = verify_token(encode_token("jane@example.org", SECRET), "")
    assert (check.recipient, check.verified, check.problem) == (
        "jane@example.org",
        False,
        VerpProblem.NO_SECRET,
    )


@pytest.mark.parametrize("token", ["", "abc123", "a1b2c3d4e5f6", "=example.org", "jane="])
def test_malformed_tokens_are_reported_as_such(token: str) -> None:
    assert verify_token(token, SECRET).problem is VerpProblem.MALFORMED


def test_token_of_reads_the_part_after_the_separator() -> None:
    assert token_of("bounces+abc=d.e@bounce.example") == "abc=d.e"
    assert token_of("bounces@bounce.example") is None
    assert token_of("<bounces-x@b.example>", "-") == "x"


def test_not_an_address_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_token("no-at-sign", SECRET)


def test_a_valid_token_vouches_for_the_address_it_names_and_no_other() -> None:
    trust = bounce_trust(encode_token("attacker@evil.example", SECRET), secret=SECRET)
    assert trust.allows("attacker@evil.example")
    assert not trust.allows("victim@example.org")
    assert trust.refusal("victim@example.org") is VerpProblem.RECIPIENT_MISMATCH


def test_the_original_recipient_of_forwarded_mail_does_not_extend_the_token() -> None:
    """The token names jane@example.org; a report about jane@forward.example (with jane
    as Original-Recipient) is not about the token's address: recorded, never applied.
    The same shape is the forger's trick: their own token's address as
    Original-Recipient, a victim as Final-Recipient."""
    trust = bounce_trust(encode_token("jane@example.org", SECRET), secret=SECRET)
    assert not trust.allows("jane@forward.example")
    assert trust.allows("jane@example.org")


def test_the_token_is_compared_in_the_pipeline_s_canonical_form() -> None:
    token = encode_token("j.doe+news@gmail.com", SECRET)
    trust = bounce_trust(token, secret=SECRET,
                         canonical=lambda a: a.split("+")[0].replace(".", "") + "@gmail.com")
    assert trust.allows("jdoe@gmail.com")


def test_without_a_secret_every_bounce_is_taken_at_its_word() -> None:
    assert bounce_trust(None, secret="").allows("anyone@example.org")
    assert bounce_trust("garbage", secret="").allows("anyone@example.org")


def test_with_a_secret_a_bounce_without_a_signed_token_changes_nothing() -> None:
    for token in (None, "jane=example.org", "not a token"):
        trust = bounce_trust(token, secret=SECRET)
        assert not trust.anyone and trust.problem is not None


def test_verp_required_false_takes_unsigned_bounces_but_never_forged_ones() -> None:
    assert bounce_trust(None, secret=SECRET, required=False).allows("a@example.org")
    assert bounce_trust("jane=example.org", secret=SECRET, required=False).allows(
        "a@example.org")
    forged = encode_token("jane@example.org", "another-secret")
    trust = bounce_trust(forged, secret=SECRET, required=False)
    assert not trust.anyone and trust.problem is VerpProblem.BAD_SIGNATURE


# ----------------------------------------------------------- through the pipeline


def process_one(tmp_path: Path, rcpt: str, secret: str) -> tuple[Path, list[tuple[str, ...]]]:
    """Store the sample DSN as received for ``rcpt`` and let the daemon's worker process it."""
    db = tmp_path / "verp.db"
    config = Config(database=DatabaseConfig(path=str(db)), verp=VerpConfig(secret=secret))
    with Store.open(db) as store:
        store.messages.insert(
            [IncomingMessage(datetime.now(UTC), "", (rcpt,), SAMPLE.read_bytes())]
        )
    untrusted: list[tuple[str, ...]] = []
    worker = Worker(config)
    worker.processing.log = _Recorder(untrusted)
    try:
        assert worker.processing.run_once() == 1
    finally:
        worker.close()
    return db, untrusted


class _Recorder:
    """The worker's log, keeping the ``bounce.untrusted`` events' token and reason."""

    def __init__(self, found: list[tuple[str, ...]]) -> None:
        self.found = found

    def warning(self, event: str, **fields: object) -> None:
        if event == "bounce.untrusted":
            self.found.append((str(fields["verp_token"]), str(fields["reason"])))

    def info(self, event: str, **fields: object) -> None:
        pass

    error = info


def addresses(db: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT address FROM addresses")]
    finally:
        conn.close()


def verdicts(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM bounces").fetchone()[0])
    finally:
        conn.close()


def test_a_bounce_with_a_valid_token_changes_the_address_state(tmp_path: Path) -> None:
    rcpt = encode_address(SAMPLE_RECIPIENT, "bounces@bounce.lab.test", secret=SECRET)
    db, untrusted = process_one(tmp_path, rcpt, SECRET)
    assert untrusted == []
    assert verdicts(db) == 1
    assert addresses(db) == [SAMPLE_RECIPIENT]


def test_a_forged_bounce_is_stored_but_changes_no_state_and_says_why(tmp_path: Path) -> None:
    rcpt = "bounces+" + encode_token(SAMPLE_RECIPIENT, "not-our-secret") + "@bounce.lab.test"
    db, untrusted = process_one(tmp_path, rcpt, SECRET)
    assert verdicts(db) == 1  # the verdict is kept for the audit
    assert addresses(db) == []  # but nobody is quarantined
    assert [problem for _token, problem in untrusted] == ["bad_signature"]


def test_cli_encode_then_decode(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "verp",
                "--secret",
                SECRET,
                "encode",
                "jane@example.org",
                "--return-path",
                "bounces@bounce.example",
            ]
        )
        == 0
    )
    address = capsys.readouterr().out.strip()
    assert main(["verp", "--secret", SECRET, "decode", address, "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["recipient"] == "jane@example.org" and decoded["verified"] is True
    assert main(["verp", "--secret", "wrong", "decode", address]) == 1
    assert "NOT verified (bad_signature)" in capsys.readouterr().out


def test_cli_decode_runs_as_a_module() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "bounced", "verp", "encode", "a@b.example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "a=b.example"
    assert "not signed" in result.stderr


def test_the_envelope_token_is_the_first_recipient_carrying_one() -> None:
    assert envelope_token(["<bounces+t=o=k@b.example>"]) == "t=o=k"
    assert envelope_token(["bounces@b.example", "bounces+second@b.example"]) == "second"
    assert envelope_token(["bounces@b.example"]) is None
    assert envelope_token(["bounces+@b.example"]) is None


def test_the_token_is_read_with_the_configured_separator() -> None:
    assert envelope_token(["bounces-jane=example.org@b.example"], separator="-") == (
        "jane=example.org")
    assert envelope_token(["bounces-jane=example.org@b.example"], separator="+") is None
    assert split_local("bounces-a-b", "-") == ("bounces", "a-b")
