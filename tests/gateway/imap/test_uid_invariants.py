"""The UID promises IMAP programs rely on, over generated sequences of folder operations
from every writer (delivery, the webmail's move, IMAP COPY / MOVE / STORE / EXPUNGE):

- within a folder a UID names one message and is never handed out again, even after
  that message is moved away or expunged: every message entering a folder gets a UID
  above every UID the folder ever had (so a program's cached UIDs never point at
  another message);
- UIDNEXT is above every UID in the folder, and UIDVALIDITY never changes;
- messages are neither lost nor duplicated: the count follows the operations;
- flags set over IMAP read back the same, in the webmail's column too.
"""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, db, reading
from gateway.imap import store
from gateway.models import MailboxMessage, MailFolder
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import deliver, plain

FOLDERS = ["INBOX", "Sent", "Trash", "Projects"]
_counter = itertools.count()

operation = st.one_of(
    st.tuples(st.just("deliver"), st.sampled_from(FOLDERS)),
    st.tuples(
        st.just("imap-move"), st.sampled_from(FOLDERS), st.integers(0, 5), st.sampled_from(FOLDERS)
    ),
    st.tuples(
        st.just("imap-copy"), st.sampled_from(FOLDERS), st.integers(0, 5), st.sampled_from(FOLDERS)
    ),
    st.tuples(
        st.just("webmail-move"),
        st.sampled_from(FOLDERS),
        st.integers(0, 5),
        st.sampled_from(["INBOX", "Sent", "Trash"]),
    ),
    st.tuples(st.just("expunge"), st.sampled_from(FOLDERS), st.integers(0, 5)),
    st.tuples(
        st.just("flags"),
        st.sampled_from(FOLDERS),
        st.integers(0, 5),
        st.sets(st.sampled_from(["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "Todo"])),
    ),
)


def _folder_state(runtime: Runtime, account_id: int) -> dict[str, tuple[int, int, list[int]]]:
    """name -> (uid_validity, uid_next, UIDs in the folder)."""
    with db.read_only(runtime.sessions) as session:
        out: dict[str, tuple[int, int, list[int]]] = {}
        for folder in session.scalars(
            sa.select(MailFolder).where(MailFolder.account_id == account_id)
        ):
            uids = session.scalars(
                sa.select(MailboxMessage.uid).where(MailboxMessage.folder_id == folder.id)
            ).all()
            out[folder.name] = (folder.uid_validity, folder.uid_next, [u for u in uids if u])
        return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_uids_are_never_reused_and_nothing_is_lost(
    runtime: Runtime, ops: list[tuple[object, ...]]
) -> None:
    n = next(_counter)
    address = f"user{n}@example.test"
    with db.transaction(runtime.sessions) as session:
        if accounts.find_domain(session, "example.test") is None:
            accounts.add_domain(session, "example.test", actor="test")
        account = accounts.add_account(session, runtime.hasher, address, "pw-portal", actor="t")
        row = accounts.add_address(session, runtime.hasher, address, account, "pw", actor="t")
        session.flush()
        account_id = account.id
        assert row.account_id == account_id
    with db.transaction(runtime.sessions) as session:
        store.create_folder(session, account_id, "Projects")

    expected_count = 0
    highest: dict[str, int] = {}  # the highest UID each folder ever had
    validity = {name: v for name, (v, _n, _u) in _folder_state(runtime, account_id).items()}

    def pick(folder: str, index: int) -> list[int]:
        uids = sorted(_folder_state(runtime, account_id)[folder][2])
        return [uids[index % len(uids)]] if uids else []

    for op in ops:
        kind, folder = op[0], str(op[1])
        before = _folder_state(runtime, account_id)
        if kind == "deliver":
            deliver(runtime, address, plain(f"m{next(_counter)}"), folder=folder)
            expected_count += 1
        elif kind in ("imap-move", "imap-copy"):
            uids = pick(folder, int(op[2]))  # type: ignore[arg-type]
            how = store.move if kind == "imap-move" else store.copy
            with db.transaction(runtime.sessions) as session:
                folder_id = store.get_folder(session, account_id, folder).id  # type: ignore[union-attr]
                pairs = how(session, account_id, folder_id, uids, str(op[3]))
            assert [src for src, _dst in pairs] == uids
            if kind == "imap-copy":
                expected_count += len(pairs)
        elif kind == "webmail-move":
            uids = pick(folder, int(op[2]))  # type: ignore[arg-type]
            with db.transaction(runtime.sessions) as session:
                for message in session.scalars(
                    sa.select(MailboxMessage)
                    .join(MailFolder, MailboxMessage.folder_id == MailFolder.id)
                    .where(MailFolder.account_id == account_id, MailFolder.name == folder)
                    .where(MailboxMessage.uid.in_(uids))
                ):
                    reading.move(session, account_id, message.id, str(op[3]))
        elif kind == "expunge":
            uids = pick(folder, int(op[2]))  # type: ignore[arg-type]
            with db.transaction(runtime.sessions) as session:
                folder_id = store.get_folder(session, account_id, folder).id  # type: ignore[union-attr]
                store.expunge(session, folder_id, uids)
            expected_count -= len(uids)
        elif kind == "flags":
            uids = pick(folder, int(op[2]))  # type: ignore[arg-type]
            wanted = frozenset(op[3])  # type: ignore[arg-type]
            with db.transaction(runtime.sessions) as session:
                folder_id = store.get_folder(session, account_id, folder).id  # type: ignore[union-attr]
                result = store.set_flags(session, folder_id, uids, wanted, "REPLACE")
            assert all(flags == wanted for flags in result.values())
            with db.read_only(runtime.sessions) as session:
                stored = session.scalars(
                    sa.select(MailboxMessage.flags).where(
                        MailboxMessage.folder_id == folder_id, MailboxMessage.uid.in_(uids)
                    )
                ).all()
            assert all(frozenset(s.split()) == wanted for s in stored)

        after = _folder_state(runtime, account_id)
        for name, (uid_validity, uid_next, uids) in after.items():
            assert len(uids) == len(set(uids)), f"{name}: a UID twice"
            assert all(uid < uid_next for uid in uids), f"{name}: UIDNEXT not above its UIDs"
            assert validity.setdefault(name, uid_validity) == uid_validity
            old = set(before.get(name, (0, 0, []))[2])
            entered = set(uids) - old
            if entered:
                assert min(entered) > highest.get(name, 0), f"{name}: a UID handed out again"
            highest[name] = max([highest.get(name, 0), *uids])
        assert sum(len(u) for _v, _n, u in after.values()) == expected_count
