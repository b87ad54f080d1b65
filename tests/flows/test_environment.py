"""Prefect's settings: in effect inside a running flow and in its server, not only in os.environ."""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.settings import Settings, get_current_settings
from prefect.settings.base import PrefectBaseSettings
from pydantic import BaseModel

from flows.environment import (
    OWNER_VARIABLE,
    PrefectConfigurationError,
    configure,
    prefect_settings,
    with_local_hosts,
)
from flows.server import LocalServer

# Client analytics switch themselves off under CI: DO_NOT_TRACK is checked
# itself, and the server's analytics (which run its telemetry service) are
# checked in the server, which does not look at CI.


@task
def settings_in_task() -> dict[str, object]:
    settings = get_current_settings()
    return {
        "persist_result": settings.tasks.default_persist_result,
        "disable_caching": settings.tasks.disable_caching,
    }


@flow(name="mricurate-settings-probe")
def settings_in_flow() -> dict[str, object]:
    settings = get_current_settings()
    return {
        "home": str(settings.home),
        "api_url": settings.api.url,
        "server_analytics": settings.server.analytics_enabled,
        "ui": settings.server.ui.enabled,
        "persist_by_default": settings.results.persist_by_default,
        "storage": str(settings.results.local_storage_path),
        "log_prints": settings.logging.log_prints,
        "extra_loggers": settings.logging.extra_loggers,
        "to_api": settings.logging.to_api.enabled,
        "plugins": settings.plugins.enabled,
        "do_not_track": os.environ.get("DO_NOT_TRACK"),
        "no_proxy": os.environ.get("NO_PROXY"),
        "task": settings_in_task(),
    }


def _setting_names(model: type[BaseModel], prefix: str = "PREFECT") -> Iterator[str]:
    """Every setting's canonical variable name: PREFECT_ and its path in the model."""
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, PrefectBaseSettings):
            yield from _setting_names(kind, f"{prefix}_{name.upper()}")
        else:
            yield f"{prefix}_{name.upper()}"


def test_every_name_is_a_prefect_setting(tmp_path: Path) -> None:
    # A misspelt name would be ignored by Prefect without a word.
    known = set(_setting_names(Settings))
    assert {"PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"} <= known
    names = set(prefect_settings(tmp_path, api_url="http://127.0.0.1:1/api"))
    assert {name for name in names if name.startswith("PREFECT_")} <= known
    assert {name for name in names if not name.startswith("PREFECT_")} == {
        "DO_NOT_TRACK",
        "NO_PROXY",
        "no_proxy",
    }


def test_the_proxy_is_bypassed_for_this_machine_only() -> None:
    assert with_local_hosts("") == "127.0.0.1,localhost"
    assert with_local_hosts(" .hospital.org, localhost") == ".hospital.org,localhost,127.0.0.1"


def test_settings_in_effect_inside_a_running_flow(
    prefect_server: LocalServer, prefect_home: Path
) -> None:
    storage = prefect_home / "storage"
    results_before = set(storage.iterdir()) if storage.exists() else set()
    seen = settings_in_flow()

    assert seen["home"] == str(prefect_home)
    assert seen["api_url"] == prefect_server.api_url
    assert seen["server_analytics"] is False
    assert seen["ui"] is False
    assert seen["persist_by_default"] is False
    assert seen["storage"] == str(prefect_home / "storage")
    assert seen["log_prints"] is False
    assert seen["extra_loggers"] == []
    assert seen["to_api"] is True
    assert seen["plugins"] is False
    assert seen["do_not_track"] == "1"
    assert "127.0.0.1" in str(seen["no_proxy"]).split(",")
    assert seen["task"] == {"persist_result": False, "disable_caching": True}
    # Nothing was persisted: no result file was written.
    assert (set(storage.iterdir()) if storage.exists() else set()) == results_before


def test_the_server_runs_without_analytics(prefect_server: LocalServer, prefect_home: Path) -> None:
    # The server's telemetry service is switched by this very setting
    # (prefect/server/services/telemetry.py: enabled_getter=server.analytics_enabled).
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(f"{prefect_server.api_url}/admin/settings") as response:
        server = json.load(response)
    assert server["home"] == str(prefect_home)
    assert server["server"]["analytics_enabled"] is False
    assert server["server"]["ui"]["enabled"] is False
    assert server["server"]["api"]["host"] == "127.0.0.1"


def test_the_home_is_private(prefect_home: Path) -> None:
    assert stat.S_IMODE(prefect_home.stat().st_mode) == 0o700
    assert os.environ["PREFECT_HOME"] == str(prefect_home)
    assert os.environ[OWNER_VARIABLE].startswith(f"{os.getpid()}:")


def test_configure_after_import_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    before = dict(os.environ)
    other = tmp_path / "private" / "prefect"

    with pytest.raises(PrefectConfigurationError, match="PREFECT_HOME") as refused:
        configure(other)

    assert "before importing" in str(refused.value)
    assert dict(os.environ) == before
    assert not other.exists()


@pytest.mark.parametrize(
    "url",
    ["https://api.prefect.cloud/api/accounts/1/workspaces/2", "ftp://127.0.0.1/api", "127.0.0.1"],
)
def test_an_api_url_off_site_or_not_http_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(PrefectConfigurationError):
        prefect_settings(tmp_path, api_url=url)


def test_without_a_server_the_api_url_is_left_out(tmp_path: Path) -> None:
    # Not set empty: Prefect would send its events to "" (the ephemeral server
    # test checks that configure() removes it from the environment).
    assert "PREFECT_API_URL" not in prefect_settings(tmp_path)
    assert prefect_settings(tmp_path)["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        f"sqlite+aiosqlite:///{tmp_path.absolute() / 'prefect.db'}"
    )
