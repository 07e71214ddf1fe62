"""The shipped knowledge and rules as data: every entry says where its wording comes from
(the reference data, an MTA's or a provider's source or documentation, never a corpus
file), carries its licence, and a broken entry is refused naming the entry and the key."""

from __future__ import annotations

import re

import pytest

from bounced.core.knowledge import (
    CLASS_VERDICTS,
    KnowledgeError,
    load_knowledge,
    parse_knowledge,
)
from bounced.core.qualify import RuleError, load_default_rules, parse_rules
from bounced.model import QualifiedBy, QualifiedBySource
from tests.paths import ROOT

KNOWLEDGE = ROOT / "bounced" / "data" / "knowledge.toml"
CORPUS_NAME = re.compile(r"\.eml\b|corpus|lhost-|rhost-|rfc3464-|arf-\d|expected\.json", re.I)


def test_every_wording_status_table_and_provider_names_its_source() -> None:
    knowledge = load_knowledge()
    sources = [knowledge.status_source]
    sources += [wording.source for wording in knowledge.wordings]
    sources += [provider.source for provider in knowledge.providers]
    assert len(sources) > 40
    for source in sources:
        assert source.strip(), "an entry without a source"
        assert not CORPUS_NAME.search(source), f"a source must not be a corpus file: {source}"


def test_every_shipped_rule_names_its_source() -> None:
    for rule in load_default_rules():
        assert rule.source.strip(), f"rule {rule.id} says nothing of its source"
        assert not CORPUS_NAME.search(rule.source), rule.source
        assert not CORPUS_NAME.search(rule.comment), rule.comment


def test_the_knowledge_file_carries_the_licence_and_provenance_of_what_it_copies() -> None:
    text = KNOWLEDGE.read_text(encoding="utf-8")
    assert "BSD-2-Clause" in text
    assert "Redistribution and use in source and binary forms" in text
    assert "Sisimai 5.1.0p3" in text


def test_every_class_used_by_the_data_has_a_verdict_or_is_known_to_say_nothing() -> None:
    knowledge = load_knowledge()
    used = {wording.klass for wording in knowledge.wordings}
    used |= set(knowledge.status_classes.values())
    used |= {each.klass for provider in knowledge.providers for each in provider.wordings}
    used |= {each.klass for provider in knowledge.providers for each in provider.codes}
    assert used - set(CLASS_VERDICTS) <= {"onhold", "undefined"}


def test_the_package_declares_the_data_files() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"data/*.toml"' in pyproject
    assert KNOWLEDGE.exists()


ENTRY = "[[wording]]\nclass = 'mailboxfull'\nsource = 'Exim'\nany = ['mailbox is full']\n"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (ENTRY.replace("source = 'Exim'\n", ""), r"wording #1 \(mailboxfull\): key 'source'"),
        (ENTRY.replace("mailboxfull'", "brimming'"), r"unknown class 'brimming'"),
        (ENTRY.replace("'mailbox is full'", "'Mailbox is full'"), r"key 'any': .*lower-cased"),
        (ENTRY.replace("any = ['mailbox is full']", "every = ['x']"), r"key 'every'"),
        ("[[provider]]\nname = 'x'\nlabel = 'X'\nsource = 's'\nhosts = ['.x.example']\n"
         "codes = [{code = 'A1', class = 'blocked'}]\n", r"provider x: key 'codes'"),
        ("[[provider]]\nname = 'x'\nlabel = 'X'\nhosts = ['.x.example']\n"
         "wordings = [{class = 'blocked', text = 'go away'}]\n", r"provider x: key 'source'"),
        ("[status]\nsource = 's'\n[status.classes]\n'5.1' = 'userunknown'\n",
         r"status: key '5.1'"),
    ],
)
def test_a_broken_entry_is_refused_naming_it(document: str, fragment: str) -> None:
    with pytest.raises(KnowledgeError, match=fragment):
        parse_knowledge("[status]\nsource = 's'\n" + document
                        if not document.startswith("[status]") else document)


def test_a_shipped_rule_without_a_source_is_refused() -> None:
    rule = "[[rule]]\nid = 42\npattern = 'x'\ntype = 'soft'\nreason = 20\n"
    with pytest.raises(RuleError, match=r"rule 42: key 'source': missing"):
        parse_rules(rule)
    (parsed,) = parse_rules(rule.replace("reason = 20", "reason = 20\nsource = 'Exim'"))
    assert parsed.source == "Exim"
    # an operator's rule may say it, need not
    (own,) = parse_rules(rule.replace("id = 42", "id = 10042"))
    assert own.source == ""


@pytest.mark.parametrize(
    "rendered",
    ["rule:12", "table:7", "status:5.1.1", "status:5.1.1+stage:RCPT",
     "status:5.2.1+phrase:userunknown", "phrase:userunknown+stage:none",
     "provider:google:userunknown", "provider:godaddy:IB607", "class:5.7", "stage:HELO",
     "kind", "none"],
)
def test_every_evidence_chain_round_trips(rendered: str) -> None:
    parsed = QualifiedBy.parse(rendered)
    assert str(parsed) == rendered
    assert QualifiedBy.parse(str(parsed)) == parsed


def test_a_chain_keeps_the_deciding_evidence_first() -> None:
    parsed = QualifiedBy.parse("status:5.1.1+stage:RCPT+phrase:userunknown")
    assert (parsed.source, parsed.ref) == (QualifiedBySource.STATUS, "5.1.1")
    assert [str(each) for each in parsed.chain] == [
        "status:5.1.1", "stage:RCPT", "phrase:userunknown"]
    # operators select rule verdicts on the exact string
    assert str(QualifiedBy(QualifiedBySource.RULE, "12")) == "rule:12"
