"""``mricurate init`` and ``mricurate.toml``: a workspace a newcomer can trust."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from pipeline.errors import LocationError
from pipeline.keys import load_key
from pipeline.workspace import (
    ConfigError,
    ListenSettings,
    NodeRole,
    PacsNode,
    WorkspaceConfig,
    init_workspace,
    open_workspace,
)
from pipeline.workspace.config import CONFIG_NAME, load_config, template_text


def test_init_lays_out_the_workspace_with_a_private_0700_folder_and_a_key(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "w")
    for folder in ("incoming", "release", "quarantine", "private"):
        assert (workspace.root / folder).is_dir()
    assert stat.S_IMODE(workspace.private.stat().st_mode) == 0o700
    assert stat.S_IMODE(workspace.key_file.stat().st_mode) == 0o600
    load_key(workspace.key_file)  # a real key
    assert workspace.catalog_url == f"sqlite:///{workspace.private / 'catalog.sqlite'}"


def test_the_template_documents_every_key_at_its_default(tmp_path: Path) -> None:
    """Loading the commented template gives exactly the defaults: the comments cannot lie."""
    data = tomllib.loads(template_text())
    assert "pacs" not in data  # the nodes are commented examples
    assert sum(len(section) for section in data.values()) == len(
        [f for f in WorkspaceConfig.__dataclass_fields__ if f not in ("source", "listen", "pacs")]
    ) + len(ListenSettings.__dataclass_fields__)
    path = tmp_path / CONFIG_NAME
    path.write_text(template_text())
    assert load_config(path) == WorkspaceConfig()


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "something").write_text("x")
    with pytest.raises(LocationError, match="not empty"):
        init_workspace(tmp_path / "w")
    init_workspace(tmp_path / "v")
    with pytest.raises(LocationError, match="already a workspace"):
        init_workspace(tmp_path / "v")


def test_a_private_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "w")
    os.chmod(workspace.private, 0o750)
    with pytest.raises(LocationError, match="chmod 700"):
        open_workspace(workspace.root)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[deid]\nprofil = 'research'\n", "deid.profil", "unknown key"),
        ("[died]\n", "died", "unknown section"),
        ("[deid]\nprofile = 'reserch'\n", "deid.profile", "no profile 'reserch'"),
        ("[deid]\nclean_pixels = 'yes'\n", "deid.clean_pixels", "true or false"),
        ("[pixels]\nocr_engine = 'easyocr'\n", "pixels.ocr_engine", "unknown OCR engine"),
        ("[review]\nspot_check_share = 2\n", "review.spot_check_share", "between 0 and 1"),
        ("[review]\nsession_idle_seconds = 0\n", "review.session_idle_seconds",
         "between 1 and 86400"),
        ("[review]\nlogin_token_seconds = 'soon'\n", "review.login_token_seconds",
         "must be a number"),
        ("[release]\nsplits = { train = 0.8, validation = 0.3, test = 0.1 }\n",
         "release.splits", "add up to 1"),
        ("[release]\nsplits = { train = 1.0 }\n", "release.splits", "exactly train"),
        ("[schedule]\ncron = '2am'\n", "schedule.cron", "five fields"),
        ("[catalog]\nurl = 'mysql://x'\n", "catalog.url", "postgresql"),
        ("[ingest]\njobs = -1\n", "ingest.jobs", "whole number"),
        ("[ingest]\ndask_address = '10.1.2.3:8786'\n", "ingest.dask_address", "tcp://HOST:PORT"),
        ("[ingest]\ndask_address = 'tcp://10.1.2.3:port'\n", "ingest.dask_address", "1 to 65535"),
        ("[ingest]\ndask_address = 8786\n", "ingest.dask_address", "string"),
        ("[ingest]\nchunk_deadline_seconds = 0\n", "ingest.chunk_deadline_seconds",
         "more than 0 seconds"),
        ("[ingest]\nchunk_deadline_seconds = 'an hour'\n", "ingest.chunk_deadline_seconds",
         "must be a number"),
        ("[ingest\n", "(syntax)", "not valid TOML"),
        ("[listen]\nport = 0\n", "listen.port", "TCP port"),
        ("[listen]\nae_title = 'MUCH_TOO_LONG_AE_TITLE'\n", "listen.ae_title", "1 to 16"),
        ("[listen]\nallowed_ae_titles = 'SCANNER'\n", "listen.allowed_ae_titles", "list"),
        ("[listen]\nallowed_hosts = ['scanner.local']\n", "listen.allowed_hosts", "IP address"),
        ("[listen]\ndimse_timeout = 0\n", "listen.dimse_timeout", "more than 0"),
        ("[listen]\nporto = 104\n", "listen.porto", "unknown key"),
        ("[pacs.research]\nae_title = 'R'\nhost = 'h'\n", "pacs.research", "needs port"),
        ("[pacs.research]\nae_title = 'R'\nhost = 'h'\nport = 104\nroles = ['push']\n",
         "pacs.research.roles", "unknown role"),
        ("[[pacs]]\nae_title = 'R'\n", "pacs[1]", "name"),
    ],
)  # fmt: skip
def test_a_bad_config_fails_with_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_a_site_profile_beside_the_config_is_found(tmp_path: Path) -> None:
    from pipeline.rulefiles import rules_root

    site = tmp_path / "site.yaml"
    site.write_text((rules_root() / "dicom" / "site-example.yaml").read_text())
    path = tmp_path / CONFIG_NAME
    path.write_text("[deid]\nprofile = 'site.yaml'\n")
    assert load_config(path).profile == str(site.resolve())
    path.write_text("[deid]\nprofile = 'missing.yaml'\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path)


def test_pacs_nodes_and_the_listener_load_from_either_table_form(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(
        "[listen]\nport = 4006\nallowed_ae_titles = ['MR1 ']\nallowed_hosts = ['127.0.0.1']\n"
        "with_serve = true\n"
        "[pacs.research]\nae_title = 'RESEARCH'\nhost = 'localhost'\nport = 104\n"
    )
    config = load_config(path)
    assert config.listen == ListenSettings(
        port=4006, allowed_ae_titles=("MR1",), allowed_hosts=("127.0.0.1",), with_serve=True
    )
    research = PacsNode("research", "RESEARCH", "localhost", 104, frozenset({NodeRole.STORE}))
    assert config.node("research") == research
    with pytest.raises(ConfigError, match=r"no such PACS node \(named: research\)"):
        config.node("clinical")
    path.write_text(
        "[[pacs]]\nname = 'research'\nae_title = 'RESEARCH'\nhost = 'localhost'\nport = 104\n"
        "[[pacs]]\nname = 'mr1'\nae_title = 'MR1'\nhost = '10.0.0.1'\nport = 104\n"
        "roles = ['sender', 'query']\n"
    )
    config = load_config(path)
    assert config.node("research") == research
    assert config.node("mr1").roles == {NodeRole.SENDER, NodeRole.QUERY}
