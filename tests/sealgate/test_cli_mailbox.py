"""`sealgate mailbox export` and the mboxrd writer behind it.

The property that matters: Python's own mailbox.mbox reads the export back into
the same messages, byte for byte, even when a body line starts with "From ".
"""

from __future__ import annotations

import datetime as dt
import io
import mailbox as stdlib_mailbox
from pathlib import Path

from click.testing import CliRunner, Result

from gateway import accounts, db, mailbox
from gateway.mbox import MboxEntry, from_line, quote, unquote, write_mbox
from gateway.runtime import Runtime
from sealgate.cli import cli

T0 = dt.datetime(2026, 3, 2, 9, 5, 7, tzinfo=dt.UTC)
TRICKY = (
    b"From: Bob <bob@example.test>\r\n"
    b"Subject: quoting\r\n"
    b"\r\n"
    b"From the start of a line\r\n"
    b">From an already quoted line\r\n"
    b">>From twice\r\n"
    b"From\r\n"
    b"\r\n"
    b"last line"
)
PLAIN = b"From: Carol <carol@elsewhere.test>\r\nSubject: hi\r\n\r\nhello\r\n"
BOUNCE = b"From: MAILER-DAEMON@gw\r\nSubject: Undelivered\r\n\r\nsorry\r\n"


def run(test_env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=test_env)


def store(runtime: Runtime, owner: str, raw: bytes, *, sender: str, folder: str, at: int) -> None:
    with db.transaction(runtime.sessions) as session:
        address = accounts.find_address(session, owner)
        assert address is not None
        mailbox.store(
            session,
            address,
            raw,
            queue_id=f"M{at}",
            envelope_from=sender,
            now=T0 + dt.timedelta(minutes=at),
            folder=folder,
        )


def read_back(data: bytes, tmp_path: Path) -> list[tuple[str, bytes]]:
    path = tmp_path / "export.mbox"
    path.write_bytes(data)
    box = stdlib_mailbox.mbox(str(path), create=False)
    try:
        return [
            (box.get_message(key).get_from(), unquote(box.get_bytes(key))) for key in box.iterkeys()
        ]
    finally:
        box.close()


def lf(raw: bytes) -> bytes:
    text = raw.replace(b"\r\n", b"\n")
    return text if text.endswith(b"\n") else text + b"\n"


def test_export_round_trips_through_python_mailbox(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    store(runtime, "alice@example.test", TRICKY, sender="bob@example.test", folder="INBOX", at=1)
    store(runtime, "alice@example.test", PLAIN, sender="carol@elsewhere.test", folder="INBOX", at=2)
    store(runtime, "alice@example.test", BOUNCE, sender="", folder="Sent", at=3)
    store(runtime, "bob@example.test", PLAIN, sender="carol@elsewhere.test", folder="INBOX", at=4)

    result = run(test_env, "mailbox", "export", "Alice@Example.test")
    assert result.exit_code == 0, result.output
    assert "3 message(s) exported from alice@example.test" in result.stderr
    messages = read_back(result.stdout_bytes, tmp_path)
    assert messages == [
        ("bob@example.test Mon Mar  2 09:06:07 2026", lf(TRICKY)),
        ("carol@elsewhere.test Mon Mar  2 09:07:07 2026", lf(PLAIN)),
        ("MAILER-DAEMON Mon Mar  2 09:08:07 2026", lf(BOUNCE)),
    ]
    assert b"\n>From the start of a line\n" in result.stdout_bytes
    assert b"\n>>From an already quoted line\n" in result.stdout_bytes

    only_sent = run(test_env, "mailbox", "export", "alice@example.test", "--folder", "Sent")
    assert [raw for _, raw in read_back(only_sent.stdout_bytes, tmp_path)] == [lf(BOUNCE)]


def test_export_of_unknown_address_or_empty_folder(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    result = run(test_env, "mailbox", "export", "nobody@example.test")
    assert result.exit_code == 1
    assert "no hosted address nobody@example.test" in result.output
    assert "Traceback" not in result.output
    empty = run(test_env, "mailbox", "export", "bob@example.test", "--folder", "Trash")
    assert empty.exit_code == 0 and empty.stdout_bytes == b""
    assert "0 message(s) exported" in empty.stderr
    # A folder the mailbox does not have (a typo) is named, not exported as empty.
    typo = run(test_env, "mailbox", "export", "bob@example.test", "--folder", "Inbx")
    assert typo.exit_code == 1 and typo.stdout_bytes == b""
    assert "bob@example.test has no folder 'Inbx'" in typo.output
    assert "Traceback" not in typo.output


def test_writer_quotes_mboxrd_style() -> None:
    assert quote(b"From x\r\n>From y\r\nFromage\r\n") == b">From x\n>>From y\nFromage\n"
    assert unquote(quote(TRICKY)) == lf(TRICKY)
    assert from_line("", T0) == b"From MAILER-DAEMON Mon Mar  2 09:05:07 2026\n"
    assert from_line("a b@x", T0).startswith(b"From ab@x ")
    later = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert from_line("s@x", later) == b"From s@x Fri Jan  1 04:00:00 2027\n"
    out = io.BytesIO()
    assert write_mbox([MboxEntry("s@x", T0, b"A: 1\r\n\r\nFrom me\r\n")] * 2, out) == 2
    assert out.getvalue() == (
        b"From s@x Mon Mar  2 09:05:07 2026\nA: 1\n\n>From me\n\n"
        b"From s@x Mon Mar  2 09:05:07 2026\nA: 1\n\n>From me\n\n"
    )
