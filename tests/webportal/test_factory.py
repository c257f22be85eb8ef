"""The app factory: runtime in `app.extensions`, templates found from a checkout or
a wheel, and a bad portal setting stops start-up naming the key."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

import webportal
from gateway.runtime import Runtime
from gateway.settings import SettingsError
from webportal import create_app, templates_dir


def test_runtime_is_reachable_from_the_app(runtime: Runtime) -> None:
    app = create_app(runtime, testing=True)
    assert app.extensions["sealgate"] is runtime
    assert app.testing is True
    assert {"auth", "mail", "wkd"} <= set(app.blueprints)


def test_templates_dir_in_a_checkout() -> None:
    found = templates_dir()
    assert (found / "portal" / "base.html").is_file()
    assert found == Path(webportal.__file__).resolve().parent.parent / "templates"


def test_templates_dir_in_an_installed_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wheel force-includes templates/ as sealgate/templates.
    package = tmp_path / "site-packages" / "sealgate"
    (package / "templates" / "portal").mkdir(parents=True)
    (package / "templates" / "portal" / "base.html").write_text("x")
    spec = importlib.machinery.ModuleSpec("sealgate", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: spec if name == "sealgate" else real_find_spec(name, *a),
    )
    assert templates_dir() == package / "templates"


@pytest.mark.parametrize(
    ("portal", "named"),
    [
        ({"login_rate_limit": "lots"}, "[portal] login_rate_limit"),
        ({"ratelimit_storage": "carrier-pigeon://u:hunter2@host"}, "[portal] ratelimit_storage"),
    ],
)
def test_bad_portal_settings_name_the_key(
    runtime: Runtime, portal: dict[str, str], named: str
) -> None:
    bad = Runtime.open(runtime.settings.replace(portal=portal))
    try:
        with pytest.raises(SettingsError) as caught:
            create_app(bad, testing=True)
    finally:
        bad.close()
    assert named in str(caught.value)
    assert "hunter2" not in str(caught.value)
