"""The admin console's gate and forms: who gets in, and that every form is guarded and audited.

Threats: a non-admin (or a stolen admin password without the second factor, or
a session left open) reaching account, key or policy changes; a cross-site form
post changing state; an admin change nobody can trace. Every /admin URL is
walked from the app's own URL map, so a view added later is covered too.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, app_passwords, db, queue
from gateway.models import (
    Account,
    AppPassword,
    AuditEvent,
    Domain,
    MailboxMessage,
    MasterRotationJob,
    QueueItem,
)
from gateway.runtime import Runtime
from keystore import store
from keystore.masterkey import save_ring
from webportal import admin as admin_views
from webportal import clock
from webportal.access import access_rule
from webportal.admin.audit import FILTER_KEYS

from .admin_support import ADMIN_IP, ROOT, admin_login, make_admin
from .conftest import LoginFn, csrf_from


@dataclass
class SettableClock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def fake_clock(app: Flask) -> SettableClock:
    ticking = SettableClock(dt.datetime.now(dt.UTC))
    clock.set_clock(app, ticking)
    return ticking


@pytest.fixture
def world(runtime: Runtime, mail_users: dict[str, str]) -> dict[str, int]:
    """Alice and Bob, an admin with 2FA, a key for Alice, a queued message and a rotation job.

    Returns the ids the console's URLs take.
    """
    SECRETS[runtime.settings.data_dir.as_posix()] = make_admin(runtime) or ""
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        store.get_or_create(
            session, runtime.ring.get(), "alice@example.test", now, events=lambda *a: None
        )
        queue.enqueue(
            session, queue_id="QADMIN1", mail_from="alice@example.test",
            rcpt_to="carol@partner.example", raw=b"Subject: x\r\n\r\nhi\r\n", now=now,
        )  # fmt: skip
        alice = accounts.find_address(session, "alice@example.test")
        assert alice is not None
        job = MasterRotationJob(state="done", requested_by=ROOT, total=0, done=0, error="")
        session.add(job)
        session.flush()
        return {"account_id": alice.account_id, "address_id": alice.id, "job_id": job.id}


def admin_urls(app: Flask, ids: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every console route, with sample arguments."""
    samples: dict[str, object] = {"name": "example.test", **ids}
    found = []
    adapter = app.url_map.bind("localhost", url_scheme="https")
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        url = adapter.build(rule.endpoint, {a: samples[a] for a in rule.arguments})
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            found.append((rule.endpoint, method, url))
    return found


# Ids and a domain name that name nothing (well-formed, so the URL converter takes them).
NOWHERE: dict[str, object] = {
    "account_id": 999999, "address_id": 999999, "job_id": 999999, "name": "nowhere.test",
}  # fmt: skip


def urls_naming_nothing(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every console route whose path names an object, with
    arguments that name none."""
    naming = {r.endpoint for r in app.url_map.iter_rules() if r.arguments}
    return [(e, m, u) for e, m, u in admin_urls(app, NOWHERE) if e in naming]


def audit_count(runtime: Runtime) -> int:
    with db.read_only(runtime.sessions) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)


def test_the_console_has_every_area(app: Flask, world: dict[str, int]) -> None:
    endpoints = {e for e, _m, _u in admin_urls(app, world)}
    assert {
        "admin.index", "admin.domains", "admin.accounts", "admin.policy_page", "admin.keys",
        "admin.master_rotation", "admin.audit", "admin.audit_csv", "admin.maillog", "admin.queue",
    } <= endpoints  # fmt: skip
    assert all(access_rule(app.view_functions[e]) == "admin_required" for e in endpoints)


def test_a_non_admin_gets_403_on_every_admin_url_and_sees_no_admin_link(
    app: Flask, client: FlaskClient, login: LoginFn, world: dict[str, int], runtime: Runtime
) -> None:
    login("alice@example.test", "portal-alice-smtp-pw")
    inbox = client.get("/inbox")
    assert inbox.status_code == 200 and "/admin" not in inbox.text
    token = csrf_from(inbox.text)
    before = audit_count(runtime)
    walked = 0
    for endpoint, method, url in admin_urls(app, world):
        response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 403, (endpoint, method, response.status_code)
        assert "/admin" not in response.text
        walked += 1
    assert walked >= 30
    assert audit_count(runtime) == before


def test_a_visitor_is_sent_to_the_login_page(
    app: Flask, client: FlaskClient, world: dict[str, int]
) -> None:
    for _endpoint, method, url in admin_urls(app, world):
        if method == "GET":
            response = client.get(url)
            assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_admin_without_2fa_is_sent_to_set_it_up(
    app: Flask, client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    make_admin(runtime, "nofactor@example.test", "nofactor-password", two_factor=False)
    assert (
        admin_login(client, None, "nofactor@example.test", "nofactor-password").status_code == 302
    )
    inbox = client.get("/inbox")
    assert 'class="admin-link"' in inbox.text  # the link is there, the door is not open
    response = client.get("/admin/accounts")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account/2fa/enable")
    page = client.get("/account/2fa/enable")
    assert "Administrators need two-factor login" in page.text
    assert (
        client.post(
            "/admin/domains", data={"name": "x.test", "csrf_token": csrf_from(inbox.text)}
        ).status_code
        == 302
    )
    with db.read_only(runtime.sessions) as session:
        assert accounts.find_domain(session, "x.test") is None


def test_an_admin_with_2fa_and_a_fresh_login_gets_every_page(
    app: Flask, client: FlaskClient, world: dict[str, int]
) -> None:
    assert admin_login(client, secret_of(app)).status_code == 302
    for endpoint, method, url in admin_urls(app, world):
        if method == "GET":
            response = client.get(url)
            assert response.status_code == 200, (endpoint, response.status_code)
    # A page for an account, address, domain or job that is not there is not found, not
    # a flash on some other page.
    walked = 0
    for endpoint, method, url in urls_naming_nothing(app):
        if method == "GET":
            response = client.get(url)
            assert response.status_code == 404, (endpoint, response.status_code)
            if response.mimetype == "text/html":
                assert "Page not found" in response.text, endpoint
            walked += 1
    assert walked >= 5


def test_a_form_for_something_that_is_not_there_gets_not_found_and_changes_nothing(
    app: Flask, admin_client: FlaskClient, runtime: Runtime
) -> None:
    """Posting to an account, address or domain URL that names nothing: the not-found
    page (a flash and a redirect used to lead to another page, or to a URL that is itself
    not found), and no audit event."""
    token = csrf_from(admin_client.get("/admin/").text)
    before = audit_count(runtime)
    walked = 0
    for endpoint, method, url in urls_naming_nothing(app):
        if method == "POST":
            response = admin_client.post(
                url,
                data={"csrf_token": token, "confirm": "nowhere.test", "address": "x@example.test"},
            )
            assert response.status_code == 404, (endpoint, response.status_code)
            assert "Page not found" in response.text, endpoint
            walked += 1
    assert walked >= 11
    assert audit_count(runtime) == before


SECRETS: dict[str, str] = {}


def secret_of(app: Flask) -> str:
    from webportal.extensions import runtime as runtime_of

    return SECRETS[runtime_of(app).settings.data_dir.as_posix()]


# -- every form: CSRF, fresh login, audit ------------------------------------------------


@dataclass(frozen=True)
class Form:
    path: Callable[[dict[str, int]], str]
    data: dict[str, str]
    actions: tuple[str, ...]


def ids_of(runtime: Runtime, login: str = "carol@example.test") -> dict[str, int]:
    with db.read_only(runtime.sessions) as session:
        account = accounts.find_account(session, login)
        address = accounts.find_address(session, login)
        return {
            "account": account.id if account else 0,
            "address": address.id if address else 0,
        }


FORMS: list[Form] = [
    Form(lambda i: "/admin/domains", {"name": "new.test"}, ("domain.add",)),
    Form(lambda i: "/admin/domains/new.test/disable", {}, ("domain.disable",)),
    Form(lambda i: "/admin/domains/new.test/enable", {}, ("domain.enable",)),
    Form(lambda i: "/admin/domains/new.test/delete", {"confirm": "new.test"}, ("domain.delete",)),
    Form(lambda i: "/admin/accounts", {"email": "carol@example.test"}, ("account.add",)),
    Form(
        lambda i: f"/admin/accounts/{i['account']}/settings",
        {"language": "de", "role": "user", "always_encrypt": "on"},
        ("account.language", "account.always_encrypt"),
    ),
    Form(lambda i: f"/admin/accounts/{i['account']}/disable", {}, ("account.disable",)),
    Form(lambda i: f"/admin/accounts/{i['account']}/enable", {}, ("account.enable",)),
    Form(lambda i: f"/admin/accounts/{i['account']}/unlock", {}, ("account.unlock",)),
    Form(lambda i: f"/admin/accounts/{i['account']}/reset-password", {}, ("account.password",)),
    Form(
        lambda i: f"/admin/accounts/{i['account']}/addresses",
        {"address": "carol@example.test"},
        ("address.add",),
    ),
    Form(lambda i: f"/admin/addresses/{i['address']}/reset-password", {}, ("address.password",)),
    Form(
        lambda i: "/admin/aliases",
        {"alias": "info@example.test", "address": "carol@example.test"},
        ("alias.add",),
    ),
    Form(lambda i: "/admin/aliases/remove", {"alias": "info@example.test"}, ("alias.remove",)),
    Form(
        lambda i: f"/admin/addresses/{i['address']}/delete",
        {"confirm": "carol@example.test"},
        ("address.delete",),
    ),
    Form(
        lambda i: f"/admin/accounts/{i['account']}/delete",
        {"confirm": "carol@example.test"},
        ("account.delete",),
    ),
    Form(lambda i: "/admin/policy", {"subject_tag": "[secure]"}, ("policy.set",)),
    Form(lambda i: "/admin/policy/rules", {"domain": "partner.example"}, ("rule.add",)),
    Form(lambda i: "/admin/policy/rules/remove", {"domain": "partner.example"}, ("rule.remove",)),
    Form(lambda i: "/admin/keys/rotate", {"address": "alice@example.test"}, ("key.rotate",)),
    Form(
        lambda i: "/admin/keys/revoke",
        {"address": "alice@example.test", "reason": "laptop lost", "code": "compromised"},
        ("key.revoke",),
    ),
    Form(lambda i: "/admin/keys/master", {}, ("master.rotate_requested",)),
    Form(lambda i: "/admin/queue/retry", {"ident": "QADMIN1"}, ("queue.retry",)),
    Form(
        lambda i: "/admin/queue/give-up", {"ident": "QADMIN1", "confirm": "on"}, ("queue.give_up",)
    ),
]


def post_endpoints(app: Flask, world: dict[str, int]) -> set[str]:
    return {e for e, m, _u in admin_urls(app, world) if m == "POST"}


def test_the_form_table_covers_every_console_form(app: Flask, world: dict[str, int]) -> None:
    """A new POST view without a row here fails this test (so it gets CSRF/fresh/audit tests)."""
    adapter = app.url_map.bind("localhost")
    covered = {adapter.match(f.path({"account": 1, "address": 1}), method="POST")[0] for f in FORMS}
    assert post_endpoints(app, world) == covered


def test_every_form_changes_state_and_is_audited_with_actor_time_and_client(
    app: Flask, client: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    assert admin_login(client, secret_of(app)).status_code == 302
    env = {"REMOTE_ADDR": ADMIN_IP}
    for form in FORMS:
        token = csrf_from(client.get("/admin/", environ_base=env).text)
        started = dt.datetime.now(dt.UTC)
        before = audit_count(runtime)
        path = form.path(ids_of(runtime))
        response = client.post(path, data={**form.data, "csrf_token": token}, environ_base=env)
        assert response.status_code in (200, 302), (path, response.status_code)
        assert "error" not in response.text, (path, response.text[:500])
        with db.read_only(runtime.sessions) as session:
            new = session.scalars(sa.select(AuditEvent).where(AuditEvent.id > before)).all()
            follow = client.get("/admin/", environ_base=env).text
            assert 'class="notice error"' not in follow, (path, follow)
        by_admin = [e for e in new if e.actor == ROOT]
        assert {e.action for e in by_admin} >= set(form.actions), (path, [e.action for e in new])
        for event in by_admin:
            assert event.ip == ADMIN_IP and event.at >= started - dt.timedelta(seconds=1)


def test_no_form_changes_anything_without_a_valid_csrf_token(
    app: Flask, client: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    assert admin_login(client, secret_of(app)).status_code == 302
    before = audit_count(runtime)
    for form in FORMS:
        path = form.path({"account": world["account_id"], "address": world["address_id"]})
        missing = client.post(path, data=form.data)
        wrong = client.post(path, data={**form.data, "csrf_token": "forged"})
        assert missing.status_code == 400 and wrong.status_code == 400, path
        assert "Form expired" in missing.text
    assert audit_count(runtime) == before
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(Domain.disabled_at)) is None
        assert accounts.find_account(session, "carol@example.test") is None


def test_every_form_needs_a_fresh_login(
    app: Flask, client: FlaskClient, runtime: Runtime, world: dict[str, int],
    fake_clock: SettableClock,
) -> None:  # fmt: skip
    assert admin_login(client, secret_of(app)).status_code == 302
    token = csrf_from(client.get("/admin/").text)
    fresh = runtime.settings.security.fresh_login_minutes
    fake_clock.now += dt.timedelta(minutes=fresh + 1)
    before = audit_count(runtime)
    for form in FORMS:
        path = form.path({"account": world["account_id"], "address": world["address_id"]})
        response = client.post(path, data={**form.data, "csrf_token": token})
        assert response.status_code == 302, path
        assert "/account/confirm" in response.headers["Location"], path
    page = client.get("/admin/keys")
    assert (
        page.status_code == 302 and "/account/confirm?next=/admin/keys" in page.headers["Location"]
    )
    assert audit_count(runtime) == before
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Account)) == 3


def test_the_audit_viewer_filters_pages_and_exports_csv(
    app: Flask, client: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    with db.transaction(runtime.sessions) as session:
        for i in range(60):
            session.add(
                AuditEvent(
                    at=dt.datetime(2026, 11, 1 + i % 28, 12, tzinfo=dt.UTC),
                    actor="cli",
                    action="rule.add",
                    target=f"d{i}.example",
                )
            )
    assert admin_login(client, secret_of(app)).status_code == 302
    first = client.get("/admin/audit", query_string={"action": "rule", "actor": "cli"})
    assert first.status_code == 200
    assert first.text.count('data-action="rule.add"') == 50 and "Page 1 of 2 (60)" in first.text
    second = client.get("/admin/audit", query_string={"action": "rule", "actor": "cli", "page": 2})
    assert second.text.count('data-action="rule.add"') == 10
    one_day = client.get(
        "/admin/audit",
        query_string={"action": "rule", "since": "2026-11-03", "until": "2026-11-03"},
    )
    assert one_day.text.count('data-action="rule.add"') == 3  # i = 2, 30, 58
    by_address = client.get("/admin/audit", query_string={"address": "d7.example"})
    assert by_address.text.count('data-action="rule.add"') == 1
    bad = client.get("/admin/audit", query_string={"since": "last week"})
    assert bad.status_code == 200 and "not a date" in bad.text
    backwards = client.get(
        "/admin/audit", query_string={"since": "2026-11-05", "until": "2026-11-03"}
    )
    assert backwards.status_code == 200
    assert "since 2026-11-05 is later than until 2026-11-03" in backwards.text
    exported = client.get("/admin/audit.csv", query_string={"action": "rule"})
    assert exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    lines = exported.text.splitlines()
    assert lines[0].startswith("at,actor,action") and len(lines) == 61
    # A day that is no date: the export held every event, the filter silently dropped.
    refused = client.get("/admin/audit.csv", query_string={"action": "rule", "since": "2026-11-31"})
    assert refused.status_code == 302 and refused.mimetype != "text/csv"
    shown = client.get(refused.headers["Location"])
    assert "not a date" in shown.text and 'value="2026-11-31"' in shown.text


def test_odd_ids_and_names_never_reach_a_500(
    app: Flask, client: FlaskClient, world: dict[str, int]
) -> None:
    assert admin_login(client, secret_of(app)).status_code == 302
    for url in (
        "/admin/accounts/99999999999999999999",
        "/admin/accounts/0",
        "/admin/addresses/99999999999999999999/delete",
        "/admin/keys/master/99999999999999999999",
        "/admin/domains/" + "x" * 5000 + "/delete",
    ):
        response = client.get(url)
        assert response.status_code == 404, (url[:60], response.status_code)
    # Beyond any id the URL converter answers a plain 404; a well-formed unknown id
    # gets the polling page's JSON answer.
    assert client.get("/admin/keys/master/99999999999999999999/progress").status_code == 404
    progress = client.get("/admin/keys/master/2147483647/progress")
    assert progress.status_code == 404 and progress.json == {
        "error": "no master-key rotation 2147483647"
    }


# The names the console's pages read from their query strings, taken from its code, so
# a filter added later is tried too.
_QUERY_NAMES = sorted(
    set(
        re.findall(
            r"""args\.get(?:list)?\(\s*["'](\w+)["']""",
            "".join(p.read_text() for p in (Path(admin_views.__file__).parent).glob("*.py")),
        )
    )
    | set(FILTER_KEYS)
    | {"page", "per_page"}
)
_odd_values = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=60).map(lambda b: urllib.parse.quote_from_bytes(b)),
    st.sampled_from(["%ff", "%00", "9" * 40, "-1", "0", "9999-12-31", "0001-01-01", "x@", "@"]),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_console_page_answers_500_whatever_its_query_string(
    app: Flask, admin_client: FlaskClient, world: dict[str, int], data: st.DataObject
) -> None:
    """Filters and searches are typed by the admin: any value gets a page (an error
    shown on it, at worst), never a server error."""
    pages = sorted({u for _e, m, u in admin_urls(app, world) if m == "GET"})
    url = data.draw(st.sampled_from(pages), label="page")
    query = data.draw(
        st.dictionaries(st.sampled_from(_QUERY_NAMES), _odd_values, min_size=1, max_size=3),
        label="query",
    )
    raw_query = "&".join(
        f"{name}={value if '%' in value else urllib.parse.quote(value)}"
        for name, value in query.items()
    )
    response = admin_client.get(f"{url}?{raw_query}")
    assert response.status_code < 500, (url, raw_query[:200])


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient, world: dict[str, int]) -> FlaskClient:
    assert admin_login(client, secret_of(app)).status_code == 302
    return client


def test_a_key_search_for_no_mail_address_says_so(admin_client: FlaskClient) -> None:
    page = admin_client.get("/admin/keys?address=%25ff")
    assert page.status_code == 200 and "is not a mail address" in page.text


def test_the_audit_filter_takes_the_last_and_first_days_there_are(
    admin_client: FlaskClient,
) -> None:
    for query in ("until=9999-12-31", "since=9999-12-31", "since=0001-01-01&until=0001-01-01"):
        assert admin_client.get(f"/admin/audit?{query}").status_code == 200, query


def test_a_nul_in_a_query_form_or_path_is_a_bad_request(admin_client: FlaskClient) -> None:
    for url in ("/admin/audit?action=%00", "/admin/accounts?q=a%00b", "/admin/domains/x%00/delete"):
        assert admin_client.get(url).status_code in (400, 404), url
    token = csrf_from(admin_client.get("/admin/policy").text)
    refused = admin_client.post(
        "/admin/policy", data={"subject_tag": "[sec\x00ure]", "csrf_token": token}
    )
    assert refused.status_code == 400


def test_a_row_the_ring_cannot_open_is_named_and_given_up_without_its_content(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """A notification sealed under a master-key version since destroyed (see
    tests/gateway/test_queue_lost_master_key.py): the queue page says so, and giving
    it up bounces a report to the sender that says the content is lost."""
    ring = runtime.ring.get()
    notification = b"Subject: a link inside\r\n\r\nhttps://portal.example/s/secret-token\r\n"
    rcpt = "dan@partner.example"
    sealed = queue.seal_raw(ring, notification, queue_id="QSEALED", rcpt_to=rcpt)
    with db.transaction(runtime.sessions) as session:
        queue.enqueue(
            session, queue_id="QSEALED", mail_from="alice@example.test", rcpt_to=rcpt,
            raw=sealed, now=dt.datetime.now(dt.UTC), sealed=True,
        )  # fmt: skip
    old = ring.primary
    save_ring(
        runtime.settings.data_dir,
        ring.with_new_primary().with_retired(old).with_destroyed(old),
    )

    page = admin_client.get("/admin/queue")
    assert page.status_code == 200
    assert (
        f"<strong>Cannot be opened:</strong> sealed at rest under master-key version {old},"
        " which was destroyed; it bounces without its content when it expires"
    ) in page.text
    given_up = admin_client.post(
        "/admin/queue/give-up",
        data={"ident": "QSEALED", "confirm": "on", "csrf_token": csrf_from(page.text)},
    )
    assert given_up.status_code == 302
    with db.read_only(runtime.sessions) as session:
        assert (
            session.scalars(sa.select(QueueItem).where(QueueItem.queue_id == "QSEALED")).all() == []
        )
        bounces = [
            m.raw
            for m in session.scalars(sa.select(MailboxMessage))
            if m.address.address == "alice@example.test"
        ]
    [bounce] = bounces
    assert b"can no longer open its stored copy" in bounce
    assert b"text/rfc822-headers" not in bounce
    assert b"a link inside" not in bounce and b"secret-token" not in bounce


def test_purging_a_domain_deletes_the_accounts_it_leaves_with_no_address(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """The console's purge does what `sealgate domain delete --purge` does: an account
    left with no address goes with its app passwords and sessions, one with an address
    elsewhere stays; the page says so before, the notice after, and the last admin who
    can sign in is never purged."""
    url = "/admin/domains/example.test/delete"
    with db.transaction(runtime.sessions) as session:
        alice = accounts.find_account(session, "alice@example.test")
        assert alice is not None
        app_passwords.create(session, alice, "phone", dt.datetime.now(dt.UTC))
        alice_id = alice.id

    # Root (login in example.test, no address) is the only admin: purging would delete it.
    page = admin_client.get(url)
    assert f"{ROOT} is the last admin who can sign in" in page.text
    refused = admin_client.post(
        url, data={"confirm": "example.test", "purge": "on", "csrf_token": csrf_from(page.text)}
    )
    assert refused.headers["Location"].endswith(url)
    assert "the last admin who can sign in" in admin_client.get(url).text
    with db.read_only(runtime.sessions) as session:
        assert session.get(Account, alice_id) is not None

    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "other.test", actor="test")
        root = accounts.find_account(session, ROOT)
        assert root is not None
        accounts.add_address(session, runtime.hasher, "root@other.test", root, "root-pw", actor="t")
    page = admin_client.get(url)
    deleted, kept = page.text.split("would be left with no address")[1].split("stay, without")
    assert "alice@example.test" in deleted and "bob@example.test" in deleted
    assert ROOT in kept and ROOT not in deleted
    assert f"{ROOT} → root@other.test" in kept  # its login is in the domain: it moves
    assert "last admin" not in page.text
    done = admin_client.post(
        url, data={"confirm": "example.test", "purge": "on", "csrf_token": csrf_from(page.text)}
    )
    assert done.headers["Location"].endswith("/admin/domains")
    notice = admin_client.get("/admin/domains").text
    assert (
        "Domain example.test deleted with 2 address(es) and 0 message(s); 2 account(s)"
        " deleted, 1 kept (they have addresses in other domains);"
        f" {ROOT} now signs in as root@other.test."
    ) in notice
    with db.read_only(runtime.sessions) as session:
        logins = set(session.scalars(sa.select(Account.email)))
        assert logins == {"root@other.test"}  # the admin's own: its session goes on
        assert session.scalar(sa.select(sa.func.count()).select_from(AppPassword)) == 0
        events = session.scalars(
            sa.select(AuditEvent.target).where(
                AuditEvent.action == "account.delete", AuditEvent.actor == ROOT
            )
        ).all()
        assert sorted(events) == ["alice@example.test", "bob@example.test"]
    # The owner of a moved login learns it from their recent activity.
    assert "Sign-in name changed by an administrator" in admin_client.get("/account/activity").text


def test_saving_the_policy_in_force_says_unchanged_and_audits_nothing(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """The console said "Encryption policy saved." for a form that changed nothing."""
    before = audit_count(runtime)
    token = csrf_from(admin_client.get("/admin/policy").text)
    admin_client.post("/admin/policy", data={"subject_tag": "[encrypt]", "csrf_token": token})
    page = admin_client.get("/admin/policy").text
    assert "Encryption policy unchanged: every value was in force already." in page
    assert audit_count(runtime) == before
    admin_client.post("/admin/policy", data={"subject_tag": "[secure]", "csrf_token": token})
    assert "Encryption policy saved: subject_tag changed." in admin_client.get("/admin/policy").text
    assert audit_count(runtime) == before + 1


def test_a_login_or_address_outside_the_hosted_domains_says_what_to_do_in_the_console(
    admin_client: FlaskClient, runtime: Runtime, world: dict[str, int]
) -> None:
    """The console relayed the shared layer's CLI hints ("with --external-login", "add it
    with `sealgate domain add`"): an admin in the browser has no such option."""
    account = world["account_id"]
    posts = [
        (
            "/admin/accounts",
            {"email": "someone@elsewhere.test"},
            "someone@elsewhere.test is not in a hosted domain (add the domain on the Domains"
            " page first, or tick “Allow a login outside the hosted domains”)",
        ),
        (
            f"/admin/accounts/{account}/addresses",
            {"address": "alice@elsewhere.test"},
            "elsewhere.test is not a hosted domain (add it on the Domains page first)",
        ),
        (
            "/admin/aliases",
            {"alias": "info@elsewhere.test", "address": "alice@example.test"},
            "elsewhere.test is not a hosted domain (add it on the Domains page first)",
        ),
    ]
    for url, data, said in posts:
        token = csrf_from(admin_client.get("/admin/").text)
        response = admin_client.post(url, data={**data, "csrf_token": token})
        assert response.status_code == 302, url
        page = admin_client.get(response.headers["Location"]).text
        assert html.escape(said, quote=False) in page, (url, page)
        assert "--external-login" not in page and "sealgate domain add" not in page, url


def test_a_dkim_key_that_cannot_be_opened_is_named_on_the_domains_page(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """A DKIM key under a destroyed master-key version signs nothing (see
    tests/gateway/test_dkim_lost_key.py): the domain list says which, and the fix."""
    from gateway.dkim import keys as dkim_keys
    from gateway.models import DkimKey

    assert "DKIM:" not in admin_client.get("/admin/domains").text
    ring = runtime.ring.get()
    old, rotated = ring.primary, ring.with_new_primary()
    with db.transaction(runtime.sessions) as session:
        rsa = session.scalar(sa.select(DkimKey).where(DkimKey.algorithm == "rsa"))
        assert rsa is not None
        selector, blob = rsa.selector, rsa.sealed_private_key
        assert dkim_keys.rewrap(session, rotated).moved == 2
        rsa.sealed_private_key, rsa.master_version = blob, old  # as a backup held it
    save_ring(runtime.settings.data_dir, rotated.with_retired(old).with_destroyed(old))

    page = admin_client.get("/admin/domains")
    assert page.status_code == 200
    ed = selector.replace("rsa", "ed")
    # The console's admin has no shell: the step is the server operator's, in words.
    assert (
        f"<strong>DKIM:</strong> DKIM key {selector} (master-key version {old} was destroyed)"
        f" cannot be opened: mail from example.test is signed by {ed} only;"
        " ask the server&#39;s operator to renew the DKIM keys of example.test that do not"
        " open, then publish the new DNS record"
    ) in page.text
    assert "sealgate keys" not in page.text


def test_the_queue_page_says_when_mail_cannot_leave(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """No smarthost, or no master key ring: the queued rows wait (and bounce at their
    lifetime, tests/gateway/test_relay_cannot_send.py); the page says why."""
    from keystore.masterkey import ring_path

    assert not runtime.settings.relay.host
    page = admin_client.get("/admin/queue")
    assert (
        "<strong>No smarthost is configured</strong> (<code>[relay] host</code> is empty): mail"
        " to other domains cannot leave. It waits here and bounces to its sender 5 day(s)"
        " after it was queued."
    ) in page.text
    assert "The master key ring cannot be loaded" not in page.text
    ring_path(runtime.settings.data_dir).write_text("{not a ring\n")
    page = admin_client.get("/admin/queue")
    assert page.status_code == 200
    path = ring_path(runtime.settings.data_dir)
    assert (
        f"<strong>The master key ring cannot be loaded:</strong> {path}: the master key ring is"
        " malformed (JSONDecodeError); ask the server&#39;s operator to put this installation&#39;s"
        " master key ring back from a backup (docs/backup.md)."
    ) in page.text


def test_master_key_ring_problems_are_told_in_the_console_s_terms(
    admin_client: FlaskClient, runtime: Runtime
) -> None:
    """The ring is a file on the server: the console's admin cannot run chmod or
    `sealgate init`, so the console names what is wrong and asks the server's operator
    for the step, where the command line names the command (tests/keystore)."""
    import os

    from keystore.masterkey import ring_path

    path = ring_path(runtime.settings.data_dir)
    path.write_text(path.read_text() + "\n")  # a changed file is read again, and checked
    os.chmod(path, 0o644)
    page = admin_client.get("/admin/queue").text
    assert (
        f"{path} is readable by others (mode 644); ask the server&#39;s operator to make it a"
        " file that the user sealgate runs as, and no other, can read (mode 600)."
    ) in page
    assert "chmod" not in page
    os.chmod(path, 0o600)
    path.rename(path.with_suffix(".away"))
    for url, data in (
        ("/admin/keys/rotate", {"address": "alice@example.test"}),
        ("/admin/queue/give-up", {"ident": "1", "confirm": "on"}),
    ):
        token = csrf_from(admin_client.get("/admin/").text)
        done = admin_client.post(url, data={**data, "csrf_token": token})
        page = admin_client.get(done.headers["Location"]).text
        assert (
            f"{path} does not exist; ask the server&#39;s operator to put this installation&#39;s"
            " master key ring back from a backup (docs/backup.md)"
        ) in page, url
        assert "sealgate init" not in page and "sealgate keys" not in page, url
