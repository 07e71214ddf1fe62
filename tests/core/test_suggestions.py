"""How suggestions are made, on plain data (no database): which evidence wins, and
that weak resemblances are labelled as such."""

from __future__ import annotations

from bounced.core.suggest import Knowledge, codes_in, suggest, tokens
from bounced.model import FailureType, Reason, Rule

RULES = (Rule(300, r"user unknown|no such user", FailureType.HARD, Reason.USER_UNKNOWN),
         Rule(450, r"content filter|filter", FailureType.SOFT, Reason.REFUSED))
KEPT = ((7, "550 the frobnicator ate the envelope of <*>", FailureType.HARD,
         Reason.USER_UNKNOWN),)
KNOWLEDGE = Knowledge.of(RULES, KEPT)


def test_a_matching_rule_is_the_suggestion():
    found = suggest("550 5.1.1 <*>: no such user here", KNOWLEDGE)
    assert (found.failure_type, found.reason, found.basis) == (
        FailureType.HARD, Reason.USER_UNKNOWN, "matches rule 300")


def test_a_similar_kept_text_wins_over_the_reply_code():
    found = suggest("550 the frobnicator ate the envelope again", KNOWLEDGE)
    assert (found.failure_type, found.reason) == (FailureType.HARD, Reason.USER_UNKNOWN)
    assert found.basis.startswith("like text #7 (similarity ")


def test_one_shared_word_is_only_a_weak_resemblance():
    knowledge = Knowledge.of(
        (Rule(451, r"impossible to deliver", FailureType.SOFT, Reason.REFUSED),), ())
    found = suggest("envoi impossible", knowledge)  # Dice 0.5, but on one word
    assert found.basis == "weakly like rule 451 (similarity 0.50)"
    closer = suggest("deliver impossible", knowledge)
    assert closer.basis == "like rule 451 (similarity 1.00)"


def test_the_status_code_decides_when_nothing_is_similar():
    found = suggest("552 5.2.2 the tank is brimming", KNOWLEDGE)
    assert (found.failure_type, found.reason, found.basis) == (
        FailureType.SOFT, Reason.MAILBOX_FULL, "status code 5.2.2")


def test_nothing_known_leaves_it_undefined():
    found = suggest("zorglub", KNOWLEDGE)
    assert (found.failure_type, found.basis) == (FailureType.UNDEFINED,
                                                 "no code, nothing similar")


def test_texts_decided_by_the_message_kind_are_flagged():
    found = suggest("This is an email abuse report", KNOWLEDGE, "kind",
                    (FailureType.HARD, Reason.DENYLISTED))
    assert (found.failure_type, found.reason) == (FailureType.HARD, Reason.DENYLISTED)
    assert "qualifying it changes nothing" in found.basis


def test_codes_come_from_the_pipeline_first_then_from_the_text():
    assert codes_in("550 5.1.1 gone", "status:5.2.2") == ("5.2.2", "550")
    assert codes_in("451 4.7.1 later") == ("4.7.1", "451")
    assert codes_in("mailbox #xxx# 5.1.1.2 x") == (None, None)


def test_words_of_any_script_count_and_placeholders_do_not():
    assert tokens("Zukünftig #xxx# the Empfänger") == {"zukünftig", "empfänger"}
