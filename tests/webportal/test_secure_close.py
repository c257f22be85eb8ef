"""Close on the secure page ends access on the server, not only in one cookie.

Threat: a recipient's access to an opened message is a grant in the signed session
cookie, which the server cannot take back. A copy of that cookie saved before Close
(someone at a shared computer, a browser that restores its last session) opened the
message, its attachments and the answer form again until `unlock_minutes` ran out.
Close now bumps the link's grant generation in the database, and a grant issued
under an older one opens nothing: the copy meets the password form.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import (
    ALICE,
    ATTACHMENT,
    CAROL,
    DAN,
    MARKER,
    PASSWORD,
    compose,
    inbox,
    link_row,
    send,
    unlock,
)

COOKIE = "__Host-sealgate"


def browser(app: Flask, cookie: str | None = None) -> FlaskClient:
    """A browser of its own (its own cookie jar), holding `cookie` if given.

    Not `with`-managed: a preserved request context would share `g` with the
    other browsers in the same test.
    """
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    if cookie is not None:
        client.set_cookie(COOKIE, cookie)
    return client


def saved_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def close(client: FlaskClient, token: str) -> None:
    page = client.get(f"/s/{token}")
    closed = client.post(f"/s/{token}/close", data={"csrf_token": csrf_from(page.text)})
    assert closed.status_code == 303 and closed.headers["Location"] == f"/s/{token}"


def opened(client: FlaskClient, token: str) -> bool:
    page = client.get(f"/s/{token}")
    assert page.status_code == 200
    return MARKER in page.text


def test_a_cookie_saved_before_close_opens_nothing_after_it(
    app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    recipient = browser(app)
    assert unlock(recipient, token, PASSWORD).status_code == 303
    copy = browser(app, saved_cookie(recipient))
    assert opened(copy, token)  # before Close, the copy works like the original

    close(recipient, token)

    page = copy.get(f"/s/{token}")
    assert page.status_code == 200 and MARKER not in page.text
    assert 'name="password"' in page.text  # asked for the password, no error page
    download = copy.get(f"/s/{token}/a/1")
    assert download.status_code == 303 and download.headers["Location"] == f"/s/{token}"
    assert ATTACHMENT not in download.data
    answer = copy.post(
        f"/s/{token}/reply", data={"csrf_token": csrf_from(page.text), "text": "from the copy"}
    )
    # Asked for the password, the answer carried back in the form (not sent).
    assert answer.status_code == 403 and "Please enter the password again." in answer.text
    assert 'name="password"' in answer.text and MARKER not in answer.text
    assert ">\nfrom the copy</textarea>" in answer.text
    assert inbox(runtime, ALICE) == []
    assert not opened(recipient, token)
    row = link_row(runtime, token)
    assert row.grant_generation == 1 and row.failures == 0  # a Close is not a lock

    # The copy, stale now, cannot close again either: the counter stays.
    close(copy, token)
    assert link_row(runtime, token).grant_generation == 1


def test_the_password_opens_again_after_close_and_the_old_copy_stays_void(
    app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    recipient = browser(app)
    assert unlock(recipient, token, PASSWORD).status_code == 303
    before_close = saved_cookie(recipient)
    close(recipient, token)

    assert unlock(recipient, token, PASSWORD).status_code == 303
    assert opened(recipient, token)
    assert not opened(browser(app, before_close), token)


def test_close_ends_the_link_on_every_device_of_the_recipient_only(
    app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Close ends access through that link everywhere: the laptop's Close also closes
    the phone's open page (and a second browser's, or tab's in another session).

    That is what a recipient on a shared computer means by "Close", and the server
    cannot tell their second device from a copy of their cookie. Other recipients of
    the same message have links of their own, and stay open.
    """
    tokens = send(runtime, compose(to=f"{CAROL}, {DAN}"), [CAROL, DAN])
    laptop, phone, dan = browser(app), browser(app), browser(app)
    assert unlock(laptop, tokens[CAROL], PASSWORD).status_code == 303
    assert unlock(phone, tokens[CAROL], PASSWORD).status_code == 303
    assert unlock(dan, tokens[DAN], PASSWORD).status_code == 303

    close(laptop, tokens[CAROL])

    assert not opened(laptop, tokens[CAROL])
    assert not opened(phone, tokens[CAROL])
    assert opened(dan, tokens[DAN])
    assert unlock(phone, tokens[CAROL], PASSWORD).status_code == 303
    assert opened(phone, tokens[CAROL])


def test_the_link_alone_closes_no_one_elses_page(
    app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Only a browser that can read the message ends access for every device: someone
    who has the link (a forwarded notification) but not the password cannot keep
    logging the recipient out."""
    token = send(runtime, compose(), [CAROL])[CAROL]
    recipient = browser(app)
    assert unlock(recipient, token, PASSWORD).status_code == 303

    close(browser(app), token)

    assert opened(recipient, token)
    assert link_row(runtime, token).grant_generation == 0
