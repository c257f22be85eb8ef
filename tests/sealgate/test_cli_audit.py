"""Every `sealgate` command that changes or takes out data leaves an audit event, naming who.

Threat: an admin action nobody can trace, from the command line as from the console
(tests/webportal/test_admin_console.py walks the console's forms). The command tree
is walked from `cli` itself: a new command that is in neither table below fails
`test_every_command_is_in_the_table`, so it gets a recipe (and an audit event) or
a stated reason why it changes nothing an admin must answer for.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from click.testing import CliRunner

from gateway import db, queue
from gateway.models import AuditEvent
from gateway.runtime import Runtime
from sealgate.cli import cli


def walk(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            yield from walk(command, (*path, name))
    else:
        yield path


# Commands that change nothing, or whose changes are audited where they are tested.
NOT_AUDITED: dict[tuple[str, ...], str] = {
    ("domain", "list"): "reads",
    ("domain", "show"): "reads",
    ("user", "list"): "reads",
    ("user", "show"): "reads",
    ("user", "search"): "reads",
    ("address", "list"): "reads",
    ("alias", "list"): "reads",
    ("policy", "show"): "reads",
    ("rule", "list"): "reads",
    ("audit", "list"): "reads",
    ("log", "show"): "reads",
    ("queue", "list"): "reads",
    ("keys", "list"): "reads",
    ("keys", "list-external"): "reads",
    ("keys", "export"): "prints a public key, which WKD serves to anyone",
    ("keys", "renew-dkim"): "changes nothing while every DKIM key opens; audited in"
    " tests/gateway/test_dkim_lost_key.py",
    ("dns", "show"): "reads",
    ("dns", "check"): "reads (asks DNS)",
    ("init",): "its domain and admin are made by accounts.add_domain/add_account (audited)",
    ("serve",): "runs the server; what it does is audited where it happens",
    ("restore",): "test_a_restore_is_audited_in_the_restored_database",
}


@dataclass(frozen=True)
class Recipe:
    args: tuple[str, ...]
    actions: tuple[str, ...]


# In order: each runs on what the ones before it made.
RECIPES: dict[tuple[str, ...], Recipe] = {
    ("domain", "add"): Recipe(("new.test",), ("domain.add",)),
    ("domain", "disable"): Recipe(("new.test",), ("domain.disable",)),
    ("domain", "enable"): Recipe(("new.test",), ("domain.enable",)),
    ("user", "add"): Recipe(("carol@new.test",), ("account.add",)),
    ("address", "add"): Recipe(("carol@new.test", "--user", "carol@new.test"), ("address.add",)),
    ("address", "passwd"): Recipe(("carol@new.test",), ("address.password",)),
    ("user", "passwd"): Recipe(("carol@new.test",), ("account.password",)),
    ("user", "unlock"): Recipe(("carol@new.test",), ("account.unlock",)),
    ("user", "set"): Recipe(("carol@new.test", "--language", "de"), ("account.language",)),
    ("user", "disable"): Recipe(("carol@new.test",), ("account.disable",)),
    ("user", "enable"): Recipe(("carol@new.test",), ("account.enable",)),
    ("alias", "add"): Recipe(("info@new.test", "carol@new.test"), ("alias.add",)),
    ("alias", "remove"): Recipe(("info@new.test",), ("alias.remove",)),
    ("policy", "set"): Recipe(("subject_tag=[s]",), ("policy.set",)),
    ("rule", "add"): Recipe(("partner.example",), ("rule.add",)),
    ("rule", "remove"): Recipe(("partner.example",), ("rule.remove",)),
    ("keys", "rotate"): Recipe(("carol@new.test",), ("key.rotate",)),
    ("keys", "revoke"): Recipe(("carol@new.test", "--reason", "lost"), ("key.revoke",)),
    ("keys", "import"): Recipe(("{key_file}",), ("external-key.import",)),
    ("keys", "refresh"): Recipe((), ("external-key.refresh",)),
    ("mailbox", "export"): Recipe(("carol@new.test",), ("mailbox.export",)),
    ("backup",): Recipe(("{backup_dir}",), ("backup.make",)),
    ("purge",): Recipe(
        (), ("securepage.purge.run", "maillog.purge.run", "activity.purge.run")
    ),  # also when nothing was due
    ("queue", "retry"): Recipe(("QAUDIT1",), ("queue.retry",)),
    ("queue", "delete"): Recipe(("QAUDIT1",), ("queue.delete",)),
    ("queue", "give-up"): Recipe(("QAUDIT2",), ("queue.give_up",)),
    ("keys", "rotate-master"): Recipe((), ("master.rotate",)),
    ("keys", "destroy-master"): Recipe(("1", "--yes"), ("master.destroy",)),
    ("address", "delete"): Recipe(("carol@new.test", "--yes"), ("address.delete",)),
    ("user", "delete"): Recipe(("carol@new.test", "--yes"), ("account.delete",)),
    ("domain", "delete"): Recipe(("new.test", "--yes"), ("domain.delete",)),
}


def test_every_command_is_in_the_table() -> None:
    commands = set(walk(cli))
    assert not set(NOT_AUDITED) & set(RECIPES)
    assert commands == set(NOT_AUDITED) | set(RECIPES), (
        "a command without a recipe or a reason: "
        f"{sorted(commands ^ (set(NOT_AUDITED) | set(RECIPES)))}"
    )


def who() -> str:
    return getpass.getuser()


def last_id(runtime: Runtime) -> int:
    with db.read_only(runtime.sessions) as session:
        return int(session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0)


def events_after(runtime: Runtime, first: int) -> list[AuditEvent]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.id > first)))


def test_every_changing_command_is_audited_with_who_ran_it(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner(env=test_env)
    data_dir = ["--data-dir", str(runtime.settings.data_dir)]
    exported = runner.invoke(cli, [*data_dir, "keys", "export", "alice@example.test"])
    assert exported.exit_code == 0, exported.output
    key_file = tmp_path / "alice.asc"
    key_file.write_text(exported.stdout)
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        for qid in ("QAUDIT1", "QAUDIT2"):
            queue.enqueue(
                session, queue_id=qid, mail_from="alice@example.test",
                rcpt_to="carol@partner.example", raw=b"Subject: x\r\n\r\nhi\r\n", now=now,
            )  # fmt: skip
    fill = {"{key_file}": str(key_file), "{backup_dir}": str(tmp_path / "backup")}
    for path, recipe in RECIPES.items():
        args = [fill.get(a, a) for a in recipe.args]
        first = last_id(runtime)
        result = runner.invoke(cli, [*data_dir, *path, *args])
        assert result.exit_code == 0, (path, result.output)
        new = events_after(runtime, first)
        assert {e.action for e in new} >= set(recipe.actions), (path, [e.action for e in new])
        for event in new:
            if event.action in recipe.actions:
                assert event.actor == "cli", (path, event.actor)
                assert who() in event.user_agent, (path, event.user_agent)


def test_a_restore_is_audited_in_the_restored_database(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner(env=test_env)
    data_dir = ["--data-dir", str(runtime.settings.data_dir)]
    target = tmp_path / "backup"
    assert runner.invoke(cli, [*data_dir, "backup", str(target)]).exit_code == 0
    runtime.engine.dispose()  # a restore replaces the SQLite file under the pool
    restored = runner.invoke(cli, [*data_dir, "restore", "--force", str(target)])
    assert restored.exit_code == 0, restored.output
    [event] = [e for e in events_after(runtime, 0) if e.action == "backup.restore"]
    assert event.actor == "cli" and who() in event.user_agent
    assert event.target == str(target.resolve())
