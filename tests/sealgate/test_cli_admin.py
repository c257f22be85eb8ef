"""Every admin command of issue 12 through click, its `--json` output parsed back.

The commands run in process (click's runner) against the test's real database;
one test runs the real `sealgate` process to show the wiring of the entry point.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway import accounts, app_passwords, db, sessions, totp
from gateway.admin import maillog
from gateway.models import (
    Account,
    AccountSecurity,
    Address,
    AppPassword,
    AuditEvent,
    Base,
    MailboxMessage,
    MailLogEntry,
    PortalSession,
)
from gateway.relay import Relay
from gateway.runtime import Runtime
from keystore import store
from keystore.models import STATUS_RETIRED, StoredKey
from sealgate.cli import cli
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.keystore.conftest import run_sealgate


@pytest.fixture
def run(runtime: Runtime, test_env: dict[str, str]) -> Any:
    def invoke(*args: str, ok: bool = True, input: str | None = None) -> Result:
        result = CliRunner(env=test_env).invoke(
            cli, ["--data-dir", str(runtime.settings.data_dir), *args], input=input
        )
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert "Traceback" not in result.output
        return result

    return invoke


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def audit_actions(runtime: Runtime) -> list[tuple[str, str, str]]:
    with db.read_only(runtime.sessions) as session:
        return [
            (e.action, e.actor, e.target)
            for e in session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_domain_commands(run: Any, runtime: Runtime, mail_users: dict[str, str]) -> None:
    shown = as_json(run("domain", "show", "--json"))
    assert shown == [
        {
            "name": "example.test",
            "disabled": False,
            "addresses": 2,
            "created_at": shown[0]["created_at"],
            "dkim_problem": "",  # its DKIM keys open
        }
    ]
    # One domain, as `user show EMAIL` shows one account: the name was "an unexpected
    # extra argument".
    assert as_json(run("domain", "show", "Example.TEST", "--json")) == shown[0]
    assert run("domain", "show", "example.test").output.startswith("example.test\tactive\t2 ")
    refused = run("domain", "show", "nowhere.test", ok=False)
    assert refused.output == "Error: no hosted domain nowhere.test\n"
    assert as_json(run("domain", "disable", "example.test", "--json")) == {
        "domain": "example.test",
        "disabled": True,
    }
    assert as_json(run("domain", "show", "--json"))[0]["disabled"] is True
    assert as_json(run("domain", "enable", "example.test", "--json"))["disabled"] is False
    refused = run("domain", "delete", "example.test", "--yes", ok=False)
    assert "still has 2 address(es)" in refused.output
    run("domain", "add", "empty.test")
    assert as_json(run("domain", "delete", "empty.test", "--json", "--yes")) == {
        "domain": "empty.test",
        "addresses": [],
        "messages": 0,
        "accounts_deleted": [],
        "accounts_kept": [],
        "logins_moved": [],
    }
    purged = as_json(run("domain", "delete", "example.test", "--purge", "--yes", "--json"))
    assert purged["addresses"] == ["alice@example.test", "bob@example.test"]
    assert purged["accounts_deleted"] == ["alice@example.test", "bob@example.test"]
    assert purged["logins_moved"] == []
    with db.read_only(runtime.sessions) as session:
        assert accounts.list_domains(session) == []
        assert session.scalar(sa.select(sa.func.count()).select_from(Address)) == 0
    actions = [a for a, actor, _ in audit_actions(runtime) if actor == "cli"]
    assert actions == [
        "domain.disable",
        "domain.enable",
        "domain.add",
        "domain.delete",
        "address.delete",
        "account.delete",
        "address.delete",
        "account.delete",
        "domain.delete",
    ]
    assert (
        "no hosted domain nowhere.test" in run("domain", "disable", "nowhere.test", ok=False).output
    )


def _account_rows(runtime: Runtime, account_id: int) -> dict[str, int]:
    """The account's row, and how many rows of each kind it owns (2FA, app passwords, ...)."""
    with db.read_only(runtime.sessions) as session:

        def count(model: type[Base], where: sa.ColumnElement[bool]) -> int:
            query = sa.select(sa.func.count()).select_from(model).where(where)
            return int(session.scalar(query) or 0)

        rows = {"accounts": count(Account, Account.id == account_id)}
        for model in (AccountSecurity, AppPassword, PortalSession):
            rows[model.__tablename__] = count(model, model.account_id == account_id)
        return rows


def test_domain_purge_deletes_the_accounts_it_leaves_with_no_address(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """An account kept after its addresses were purged signed in with a login in no hosted
    domain, holding its 2FA secret, app passwords and sessions. Now: an account left with
    no address goes with everything it owns; one with an address in another domain stays;
    the question before and the output after say how many of each. The one kept signs in
    with its address there from then on (its login was in the purged domain): the
    question and the output name the move, the audit log records it."""
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "other.test", actor="test")
        alice = accounts.find_account(session, "alice@example.test")
        bob = accounts.find_account(session, "bob@example.test")
        assert alice is not None and bob is not None
        accounts.add_address(
            session, runtime.hasher, "bob@other.test", bob, "bob-other-pw", actor="t"
        )
        # A login in the domain and no address at all.
        carol = accounts.add_account(session, runtime.hasher, "carol@example.test", "pw", actor="t")
        ring = totp.ring_for(runtime.settings)
        then = now - dt.timedelta(minutes=2)
        secret = totp.start_enrolment(session, ring, alice.id, then)
        code = totp.code_at(secret, totp.time_step(then))
        assert totp.confirm_enrolment(session, ring, alice, code, then) is not None
        app_passwords.create(session, alice, "laptop", now)
        sessions.create(session, alice.id, "nonce-alice", ip="192.0.2.7", user_agent="ua", now=now)
        sessions.create(session, bob.id, "nonce-bob", ip="192.0.2.8", user_agent="ua", now=now)
        session.flush()
        alice_id, bob_id, carol_id = alice.id, bob.id, carol.id
    assert _account_rows(runtime, alice_id) == {
        "accounts": 1, "account_security": 1, "app_passwords": 1, "portal_sessions": 1,
    }  # fmt: skip

    asked = run("domain", "delete", "example.test", "--purge", input="n\n", ok=False)
    assert (
        "delete example.test with 2 address(es) and 0 message(s), and 2 account(s) left with"
        " no address (1 account(s) with addresses in other domains stay)?"
    ) in asked.output
    assert (
        "bob@example.test will sign in as bob@other.test (its login was in example.test)"
    ) in asked.output
    assert "Aborted" in asked.output
    assert _account_rows(runtime, alice_id)["accounts"] == 1

    done = run("domain", "delete", "example.test", "--purge", input="y\n")
    assert done.output.splitlines()[-2:] == [
        "domain example.test deleted with 2 address(es);"
        " 2 account(s) deleted, 1 kept (addresses in other domains)",
        "bob@example.test now signs in as bob@other.test (its login was in example.test)",
    ]
    for gone in (alice_id, carol_id):
        assert set(_account_rows(runtime, gone).values()) == {0}, gone
    assert _account_rows(runtime, bob_id) == {
        "accounts": 1, "account_security": 0, "app_passwords": 0, "portal_sessions": 1,
    }  # fmt: skip
    run("user", "show", "bob@example.test", ok=False)
    shown = as_json(run("user", "show", "bob@other.test", "--json"))
    assert shown["addresses"] == ["bob@other.test"]
    with db.read_only(runtime.sessions) as session:
        events = {
            (e.action, e.target): e.detail
            for e in session.scalars(sa.select(AuditEvent).where(AuditEvent.actor == "cli"))
        }
    assert "purged with domain example.test" in events[("account.delete", "alice@example.test")]
    assert ("account.delete", "carol@example.test") in events
    assert ("account.delete", "bob@example.test") not in events
    assert events[("account.login", "bob@other.test")] == (
        "was bob@example.test; purged with domain example.test"
    )
    assert events[("domain.delete", "example.test")] == (
        "purged 2 address(es), 0 message(s); 2 account(s) deleted, 1 kept"
        " (addresses in other domains), 1 login(s) moved"
    )


def test_domain_delete_refuses_what_would_strand_accounts_or_the_last_admin(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "empty.test", actor="test")
        accounts.add_account(session, runtime.hasher, "dora@empty.test", "pw", actor="t")
        alice = accounts.find_account(session, "alice@example.test")
        assert alice is not None
        alice.is_admin = True
    # No address, but an account whose login is there: deleted alone, it would be stranded.
    refused = run("domain", "delete", "empty.test", "--yes", ok=False)
    assert "still has 1 account(s) with no address elsewhere" in refused.output
    purged = as_json(run("domain", "delete", "empty.test", "--purge", "--yes", "--json"))
    assert (purged["accounts_deleted"], purged["accounts_kept"]) == (["dora@empty.test"], [])
    # Alice is the only admin: purging her domain would lock everyone out of the console.
    refused = run("domain", "delete", "example.test", "--purge", "--yes", ok=False)
    assert "would delete alice@example.test, the last admin who can sign in" in refused.output
    with db.read_only(runtime.sessions) as session:
        assert accounts.find_account(session, "alice@example.test") is not None
        assert accounts.find_address(session, "bob@example.test") is not None


def test_user_commands(run: Any, runtime: Runtime, mail_users: dict[str, str]) -> None:
    shown = as_json(run("user", "show", "alice@example.test", "--json"))
    assert shown["role"] == "user" and shown["addresses"] == ["alice@example.test"]
    assert shown["always_encrypt"] is False and shown["language"] == "en"

    changed = as_json(
        run(
            "user", "set", "alice@example.test", "--language", "de", "--role", "admin",
            "--always-encrypt", "on", "--json",
        )
    )  # fmt: skip
    assert (changed["language"], changed["role"], changed["always_encrypt"]) == (
        "de",
        "admin",
        True,
    )
    assert "give --language" in run("user", "set", "alice@example.test", ok=False).output

    found = as_json(run("user", "search", "bob", "--json"))
    assert [a["email"] for a in found["accounts"]] == ["bob@example.test"]
    assert found["total"] == 1 and found["pages"] == 1

    assert as_json(run("user", "disable", "bob@example.test", "--json"))["disabled"] is True
    assert as_json(run("user", "show", "bob@example.test", "--json"))["disabled"] is True
    assert as_json(run("user", "enable", "bob@example.test", "--json"))["disabled"] is False

    deleted = as_json(run("user", "delete", "bob@example.test", "--yes", "--json"))
    assert deleted == {"email": "bob@example.test", "addresses": ["bob@example.test"]}
    with db.read_only(runtime.sessions) as session:
        assert accounts.find_account(session, "bob@example.test") is None
    assert "no account bob@example.test" in run("user", "show", "bob@example.test", ok=False).output
    actions = {a for a, actor, _ in audit_actions(runtime) if actor == "cli"}
    assert {
        "account.language",
        "account.role",
        "account.always_encrypt",
        "account.disable",
        "account.enable",
        "address.delete",
        "account.delete",
    } <= actions


def test_user_add_refuses_a_login_outside_the_hosted_domains(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    refused = run("user", "add", "someone@elsewhere.test", ok=False)
    assert refused.output == (
        "Error: someone@elsewhere.test is not in a hosted domain (add the domain with"
        " `sealgate domain add`, or allow an outside login with --external-login)\n"
    )
    # The shared layer names no command, so the console can give its own words; the
    # command line still says which command hosts the domain.
    for args in (
        ("address", "add", "alice@elsewhere.test", "--user", "alice@example.test"),
        ("alias", "add", "info@elsewhere.test", "alice@example.test"),
    ):
        assert run(*args, ok=False).output == (
            "Error: elsewhere.test is not a hosted domain (add it with `sealgate domain add`)\n"
        ), args
    with db.read_only(runtime.sessions) as session:
        assert accounts.find_account(session, "someone@elsewhere.test") is None
    added = run("user", "add", "someone@elsewhere.test", "--external-login")
    assert "account someone@elsewhere.test added" in added.output
    run("user", "add", "carol@example.test")  # a hosted login needs no flag


def test_user_add_takes_json_as_the_readme_says_every_admin_command_does(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The README lists `user add` among the commands that "every one of them takes
    --json"; it answered "No such option". The generated password is in it once, as in
    the text form; a password chosen on standard input is not repeated."""
    added = as_json(run("user", "add", "carol@example.test", "--language", "fr", "--json"))
    password = added.pop("password")
    assert len(password) >= 16
    assert added == as_json(run("user", "show", "carol@example.test", "--json"))
    assert (added["email"], added["role"], added["language"]) == (
        "carol@example.test",
        "user",
        "fr",
    )
    with db.read_only(runtime.sessions) as session:
        carol = accounts.find_account(session, "carol@example.test")
        assert carol is not None and runtime.hasher.verify(carol.password_hash, password)
    chosen = as_json(
        run("user", "add", "dave@example.test", "--admin", "--password-stdin", "--json",
            input="a password dave chose\n")
    )  # fmt: skip
    assert chosen["password"] is None and chosen["role"] == "admin"
    text = run("user", "add", "erin@example.test").output.splitlines()
    assert text[0] == "account erin@example.test added"
    assert text[1].startswith("password: ") and text[1].endswith("(shown once; store it now)")


def test_new_accounts_take_the_policy_defaults(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    run("policy", "set", "new_account_language=fr", "new_account_always_encrypt=on")
    run("user", "add", "carol@example.test")
    carol = as_json(run("user", "show", "carol@example.test", "--json"))
    assert (carol["language"], carol["always_encrypt"]) == ("fr", True)


def test_address_delete_purges_mail_and_retires_keys(
    run: Any, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        store.get_or_create(
            session, runtime.ring.get(), "bob@example.test", now, events=lambda *a: None
        )
        bob = accounts.find_address(session, "bob@example.test")
        assert bob is not None
        session.add(
            MailboxMessage(address_id=bob.id, queue_id="Q1", size=3, raw=b"abc", received_at=now)
        )
    assert "Aborted" in run("address", "delete", "bob@example.test", input="n\n", ok=False).output
    result = as_json(run("address", "delete", "bob@example.test", "--yes", "--json"))
    assert result == {"address": "bob@example.test", "messages_purged": 1}
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MailboxMessage)) == 0
        # Every address has a key from its creation on (issue 13); only bob's are retired.
        statuses = list(
            session.scalars(
                sa.select(StoredKey.status).where(StoredKey.address == "bob@example.test")
            )
        )
        assert statuses and set(statuses) == {STATUS_RETIRED}
        bob_account = accounts.find_account(session, "bob@example.test")
        assert bob_account is not None and bob_account.addresses == []


def test_alias_commands(run: Any, mail_users: dict[str, str]) -> None:
    added = as_json(run("alias", "add", "info@example.test", "alice@example.test", "--json"))
    assert added == {"alias": "info@example.test", "address": "alice@example.test"}
    assert as_json(run("alias", "list", "--json")) == [added]
    assert (
        "exists already"
        in run("alias", "add", "bob@example.test", "alice@example.test", ok=False).output
    )
    run("alias", "remove", "info@example.test")
    assert as_json(run("alias", "list", "--json")) == []


def test_policy_commands(run: Any, runtime: Runtime, mail_users: dict[str, str]) -> None:
    shown = as_json(run("policy", "show", "--json"))
    assert shown["subject_tag"]["value"] == "[encrypt]"
    assert shown["securepage_valid_days"] == {
        "value": 30,
        "default": 30,
        "meaning": shown["securepage_valid_days"]["meaning"],
    }
    after = as_json(
        run("policy", "set", "securepage_valid_days=14", "subject_tag=[secure]", "--json")
    )
    assert after["securepage_valid_days"]["value"] == 14
    assert after["subject_tag"]["value"] == "[secure]"
    # Bounds: the Argon2 cost and lifetimes are refused past their limits, naming the key.
    too_much = run("policy", "set", "securepage_kdf_memory_cost=99999999", ok=False)
    assert "securepage_kdf_memory_cost: must be between" in too_much.output
    inverted = run("policy", "set", "securepage_max_valid_days=7", ok=False)
    assert "must not be less than securepage_valid_days" in inverted.output
    assert "unknown policy setting" in run("policy", "set", "colour=blue", ok=False).output
    assert "write KEY=VALUE" in run("policy", "set", "subject_tag", ok=False).output
    assert as_json(run("policy", "show", "--json"))["securepage_valid_days"]["value"] == 14
    # Back to the default: the override row goes.
    run("policy", "set", "securepage_valid_days=30")
    text = run("policy", "show").output
    assert "securepage_valid_days = 30\t" in text
    assert 'subject_tag = "[secure]"  (default "[encrypt]")' in text


def test_policy_set_to_the_values_in_force_says_unchanged_and_audits_nothing(
    run: Any, runtime: Runtime
) -> None:
    """`policy set` said "policy updated" for values that were in force already."""

    def policy_events() -> list[str]:
        return [t for a, _actor, t in audit_actions(runtime) if a == "policy.set"]

    done = run("policy", "set", "subject_tag=[secure]")
    assert done.output == "policy updated: subject_tag\n"
    assert policy_events() == ["subject_tag"]
    again = run("policy", "set", "subject_tag=[secure]", "securepage_valid_days=30")
    assert again.output == (
        "policy unchanged (already in force: subject_tag, securepage_valid_days)\n"
    )
    assert policy_events() == ["subject_tag"]
    mixed = run("policy", "set", "subject_tag=[secure]", "securepage_valid_days=14")
    assert mixed.output == (
        "policy updated: securepage_valid_days (already in force: subject_tag)\n"
    )
    assert policy_events() == ["subject_tag", "securepage_valid_days"]


def test_rule_commands(run: Any, runtime: Runtime) -> None:
    assert as_json(run("rule", "add", "Partner.Example", "--json")) == {
        "domain": "partner.example",
        "require_encryption": True,
    }
    assert "exists already" in run("rule", "add", "partner.example", ok=False).output
    assert [r["domain"] for r in as_json(run("rule", "list", "--json"))] == ["partner.example"]
    run("rule", "remove", "partner.example")
    assert as_json(run("rule", "list", "--json")) == []
    assert "no rule for" in run("rule", "remove", "partner.example", ok=False).output
    assert "not a valid domain" in run("rule", "add", "not a domain", ok=False).output


def test_audit_list(run: Any, runtime: Runtime, mail_users: dict[str, str]) -> None:
    run("rule", "add", "partner.example")
    run("user", "set", "bob@example.test", "--language", "fr")
    events = as_json(run("audit", "list", "--actor", "cli", "--json"))
    assert [e["action"] for e in events["events"]] == ["account.language", "rule.add"]
    by_action = as_json(run("audit", "list", "--action", "rule", "--json"))["events"]
    assert [e["target"] for e in by_action] == ["partner.example"]
    by_address = as_json(run("audit", "list", "--address", "bob@example.test", "--json"))
    assert {e["action"] for e in by_address["events"]} == {
        "account.add",
        "address.add",
        "key.create",
        "account.language",
    }
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert as_json(run("audit", "list", "--since", today, "--json"))["total"] >= 3
    assert as_json(run("audit", "list", "--until", "2000-01-01", "--json"))["total"] == 0
    assert "not a date" in run("audit", "list", "--since", "yesterday", ok=False).output
    backwards = run("audit", "list", "--since", "2026-12-05", "--until", "2026-12-01", ok=False)
    assert backwards.exit_code == 2  # a usage error, as for a date that is no date
    assert "--since 2026-12-05 is later than --until 2026-12-01" in backwards.output
    one_day = as_json(run("audit", "list", "--since", today, "--until", today, "--json"))
    assert one_day["total"] >= 3  # one day: the same day at both ends is no error
    exported = run("audit", "list", "--actor", "cli", "--csv").stdout.splitlines()
    assert exported[0] == "at,actor,action,target,success,ip,user_agent,detail"
    assert len(exported) == 3 and ",cli,rule.add,partner.example,True," in exported[2]


def test_log_show_and_queue_give_up(
    run: Any, runtime: Runtime, mail_users: dict[str, str], smarthost: FakeSmarthost
) -> None:
    """A message to an external recipient: the log names the smarthost's refusal; giving up
    the queued copy bounces it to the sender's mailbox."""
    from gateway.pipeline import ClientInfo, Sender, Submission, submit

    smarthost.fail("rcpt", "450 4.2.1 Mailbox busy, come back later")
    rt = Runtime(
        settings=relay_settings_for(runtime.settings, smarthost),
        engine=runtime.engine,
        sessions=runtime.sessions,
        hasher=runtime.hasher,
        ring=runtime.ring,
    )
    with db.read_only(runtime.sessions) as session:
        alice = accounts.find_account(session, "alice@example.test")
        assert alice is not None
        alice_id = alice.id
    raw = (
        b"From: alice@example.test\r\nTo: carol@partner.example\r\nSubject: hi\r\n"
        b"Message-ID: <log-1@example.test>\r\n\r\nhello\r\n"
    )
    queue_id = submit(
        rt,
        Submission(
            sender=Sender(alice_id, "alice@example.test"),
            envelope_from="alice@example.test",
            recipients=["carol@partner.example"],
            raw=raw,
            client=ClientInfo("test", "127.0.0.1", "ESMTPSA"),
            received_at=dt.datetime.now(dt.UTC),
        ),
    )

    async def sweep() -> None:
        await Relay(rt).sweep()
        await asyncio.sleep(0.3)

    asyncio.run(sweep())
    shown = as_json(run("log", "show", "--address", "carol@partner.example", "--json"))
    [entry] = shown["entries"]
    assert entry["queue_id"] == queue_id and entry["message_id"] == "<log-1@example.test>"
    assert (entry["handling"], entry["status"]) == ("plain", maillog.DEFERRED)
    assert "450 4.2.1 Mailbox busy, come back later" in entry["last_reply"]
    assert as_json(run("log", "show", "--message", "<log-1@example.test>", "--json"))["total"] == 1
    assert as_json(run("log", "show", "--address", "nobody@x.test", "--json"))["total"] == 0

    gave_up = as_json(run("queue", "give-up", queue_id, "--json"))
    assert gave_up == {"carol@partner.example": "mailbox"}
    assert "no queued message" in run("queue", "give-up", queue_id, ok=False).output
    with db.read_only(runtime.sessions) as session:
        bounce = session.scalar(
            sa.select(MailboxMessage).where(MailboxMessage.queue_id == queue_id)
        )
        assert bounce is not None and bounce.envelope_from == ""
        assert session.scalar(sa.select(MailLogEntry.status)) == maillog.GIVEN_UP
    assert ("queue.give_up", "cli", "carol@partner.example") in audit_actions(runtime)


def test_the_real_command_line(
    runtime: Runtime, test_env: dict[str, str], mail_users: dict[str, str]
) -> None:
    result = run_sealgate(
        test_env, "user", "set", "bob@example.test", "--always-encrypt", "on", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["always_encrypt"] is True
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(
            sa.select(Account.always_encrypt).where(Account.email == "bob@example.test")
        )


def test_the_cli_choices_match_the_admin_layer() -> None:
    """`user set` keeps its choices in the CLI so that `--help` loads no database layer."""
    from gateway.admin import accounts as admin_accounts
    from sealgate.cli import admin as cli_admin

    assert cli_admin.LANGUAGES == admin_accounts.LANGUAGES
    assert cli_admin.ROLES == admin_accounts.ROLES


def test_deleting_what_does_not_exist_says_so_before_asking(run: Any) -> None:
    """No "delete nobody@... and all its mail? [y/N]" for a name that is no account."""
    for args, missing in (
        (("user", "delete", "nobody@example.test"), "no account nobody@example.test"),
        (("address", "delete", "nobody@example.test"), "no address nobody@example.test"),
    ):
        result = run(*args, input="", ok=False)
        assert missing in result.output
        assert "[y/N]" not in result.output
