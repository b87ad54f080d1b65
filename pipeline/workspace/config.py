"""``mricurate.toml``: what a site chooses, checked once when a workspace is opened.

The file is data: a commented template is written by ``mricurate init``
(:func:`template_text`), and :func:`load_config` refuses an unknown key, a
value of the wrong type or out of range, with the file, the key and the
reason, before any input is read.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pipeline.errors import CurationError

CONFIG_NAME = "mricurate.toml"
_ENGINES = ("tesseract", "rapidocr", "both")


class ConfigError(CurationError):
    """``mricurate.toml`` has a key that is unknown, of the wrong type or out of range."""

    def __init__(self, path: Path, key: str, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        super().__init__(f"{path}: {key}: {reason}")


class NodeRole(enum.Enum):
    """What a PACS node named in ``[pacs.NAME]`` does for this workspace."""

    SENDER = "sender"  # sends to our listener: its AE title is allowed to
    STORE = "store"  # takes our C-STORE: ``mricurate push --to NAME``
    # Answers C-FIND at study level and C-MOVE to our listener (what every
    # Query/Retrieve SCP does): ``mricurate pull --from NAME``.
    QUERY = "query"
    # Also answers C-GET (the instances come back on our own association, so no
    # listener and no entry for us among its move destinations): pull prefers it.
    GET = "get"


@dataclass(frozen=True)
class PacsNode:
    """A DICOM peer: its AE title, where it listens and what it does for us."""

    name: str
    ae_title: str
    host: str
    port: int
    roles: frozenset[NodeRole] = frozenset({NodeRole.STORE})


@dataclass(frozen=True)
class ListenSettings:
    """The Storage SCP of ``mricurate listen`` (and of ``serve`` when ``with_serve``)."""

    port: int = 11112
    ae_title: str = "MRICURATE"
    address: str = "0.0.0.0"
    allowed_ae_titles: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    with_serve: bool = False


@dataclass(frozen=True)
class WorkspaceConfig:
    """A workspace's validated settings (the template documents each)."""

    profile: str = "research"
    clean_pixels: bool = True
    ocr_engine: str = "both"
    fastmri: bool = True
    quiet_seconds: float = 60.0
    jobs: int = 0
    dask_address: str = ""
    chunk_deadline_seconds: float = 3600.0
    spot_check_share: float = 0.02
    session_idle_seconds: float = 900.0
    login_token_seconds: float = 600.0
    release_name: str = "mricurate release"
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cron: str = "0 2 * * *"
    catalog_url: str = ""
    prefect_api_url: str = ""
    listen: ListenSettings = ListenSettings()
    pacs: tuple[PacsNode, ...] = ()
    deface: bool = True
    deface_rules: str = ""  # a site file (rules/deface/head.yaml's shape); empty: the shipped one
    source: Path | None = field(default=None, compare=False)

    def node(self, name: str) -> PacsNode:
        """The node ``[pacs.NAME]``; a :class:`ConfigError` lists the names there are."""
        for node in self.pacs:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.pacs) or "none yet"
        raise ConfigError(
            self.source or Path(CONFIG_NAME), f"pacs.{name}",
            f"no such PACS node (named: {known}); add a [pacs.{name}] table",
        )  # fmt: skip


def template_text() -> str:
    """The commented config ``mricurate init`` writes (every key at its default)."""
    return resources.files("pipeline.workspace").joinpath(CONFIG_NAME).read_text("utf-8")


# section.key -> (field name, check); a check returns the value or raises ValueError.
def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string in quotes")
    return value


def _share(value: object) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, not {number}")
    return number


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a number")
    return float(value)


def _seconds(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must be 0 or more seconds, not {number}")
    return number


def _lifetime(value: object) -> float:
    """A session or token lifetime: from one second to one day (longer is not a session)."""
    number = _number(value)
    if not 1.0 <= number <= 86_400.0:
        raise ValueError(f"must be between 1 and 86400 seconds (a day), not {number:g}")
    return number


def _jobs(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number, 0 for one per CPU")
    return value


def _engine(value: object) -> str:
    name = _text(value)
    if name not in _ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {', '.join(_ENGINES)}")
    return name


def _splits(value: object) -> tuple[float, float, float]:
    if not isinstance(value, Mapping) or set(value) != {"train", "validation", "test"}:
        raise ValueError("must name exactly train, validation and test, e.g. "
                         "{ train = 0.8, validation = 0.1, test = 0.1 }")  # fmt: skip
    shares = tuple(_share(value[k]) for k in ("train", "validation", "test"))
    if abs(sum(shares) - 1.0) > 1e-9:
        raise ValueError(f"the shares must add up to 1, not {sum(shares):g}")
    return shares  # type: ignore[return-value]


def _cron(value: object) -> str:
    text = _text(value)
    if len(text.split()) != 5:
        raise ValueError(
            f"{text!r} is not a cron expression of five fields (minute hour day month weekday)"
        )
    return text


def _catalog_url(value: object) -> str:
    url = _text(value)
    if url and not url.startswith(("sqlite", "postgresql")):
        raise ValueError("must be empty (SQLite in private/) or a sqlite:// or postgresql:// URL")
    return url


def dask_address(value: object) -> str:
    """Empty, or a Dask scheduler's ``tcp://HOST:PORT`` (``tls://`` too); raises ValueError."""
    address = _text(value)
    if not address:
        return address
    scheme, sep, rest = address.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls") or not colon or not host.strip("[]"):
        raise ValueError(
            f"{address!r} is not a Dask scheduler address: give tcp://HOST:PORT (or tls://), "
            "e.g. tcp://10.1.2.3:8786, or leave it empty to work on this machine"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return address


def _deadline(value: object) -> float:
    """A chunk's deadline on a Dask cluster: more than 0 seconds (a hung worker must end)."""
    number = _number(value)
    if number <= 0:
        raise ValueError(
            f"must be more than 0 seconds, not {number:g}: a chunk later than this is sent to "
            "another worker, then fails the run (give hours, e.g. 3600, not 0 for 'never')"
        )
    return number


def _api_url(value: object) -> str:
    url = _text(value)
    if url and not url.startswith(("http://", "https://")):
        raise ValueError("must be empty or the http(s):// URL of a Prefect server's API")
    return url


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a TCP port, a whole number from 1 to 65535")
    return value


def _ae_title(value: object) -> str:
    """An AE title as DICOM allows it: 1 to 16 printable ASCII characters, no backslash."""
    title = _text(value)
    if not title.strip() or len(title) > 16:
        raise ValueError(f"{title!r} is not an AE title: 1 to 16 characters, not all spaces")
    if not title.isascii() or not title.isprintable() or "\\" in title:
        raise ValueError(f"{title!r} is not an AE title: printable ASCII, no backslash")
    return title.strip()


def _ae_titles(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError('must be a list of AE titles, e.g. ["MR_SCANNER_1", "PACS"]')
    return tuple(_ae_title(item) for item in value)


def _address(value: object) -> str:
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (e.g. 10.1.2.3 or ::1)") from None


def _addresses(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError('must be a list of IP addresses, e.g. ["10.1.2.3"] (empty: any host)')
    return tuple(_address(item) for item in value)


def _host(value: object) -> str:
    host = _text(value).strip()
    if not host or any(c.isspace() for c in host):
        raise ValueError("must be a host name or an IP address")
    return host


def _roles(value: object) -> frozenset[NodeRole]:
    known = ", ".join(r.value for r in NodeRole)
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a list of one or more roles: {known}")
    roles = set()
    for item in value:
        try:
            roles.add(NodeRole(_text(item)))
        except ValueError:
            raise ValueError(f"unknown role {item!r}; choose from {known}") from None
    return frozenset(roles)


def _timeout(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be more than 0 seconds, not {number}")
    return number


_LISTEN_KEYS: dict[str, Callable[[object], object]] = {
    "port": _port,
    "ae_title": _ae_title,
    "address": _address,
    "allowed_ae_titles": _ae_titles,
    "allowed_hosts": _addresses,
    "network_timeout": _timeout,
    "acse_timeout": _timeout,
    "dimse_timeout": _timeout,
    "with_serve": _bool,
}
_NODE_KEYS: dict[str, Callable[[object], object]] = {
    "ae_title": _ae_title,
    "host": _host,
    "port": _port,
    "roles": _roles,
}


def _listen(path: Path, entries: object) -> ListenSettings:
    if not isinstance(entries, dict):
        raise ConfigError(path, "listen", "must be a [listen] section of keys")
    values = {}
    for key, value in entries.items():
        check = _LISTEN_KEYS.get(key)
        if check is None:
            raise ConfigError(
                path, f"listen.{key}", f"unknown key (known: {', '.join(_LISTEN_KEYS)})"
            )
        try:
            values[key] = check(value)
        except ValueError as exc:
            raise ConfigError(path, f"listen.{key}", str(exc)) from None
    return ListenSettings(**values)  # type: ignore[arg-type]


def _pacs(path: Path, entries: object) -> tuple[PacsNode, ...]:
    """``[pacs.NAME]`` tables, or ``[[pacs]]`` entries that each have a ``name``."""
    named: list[tuple[str, object]] = []
    if isinstance(entries, list):
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ConfigError(path, f"pacs[{number}]", 'needs a name = "..." key')
            rest = {k: v for k, v in entry.items() if k != "name"}
            named.append((entry["name"], rest))
    elif isinstance(entries, dict):
        named = list(entries.items())
    else:
        raise ConfigError(path, "pacs", "must be [pacs.NAME] tables (or [[pacs]] with a name)")
    nodes: list[PacsNode] = []
    for name, entry in named:
        where = f"pacs.{name}"
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(path, where, "a node's name is letters, digits, - and _")
        if any(node.name == name for node in nodes):
            raise ConfigError(path, where, "named twice")
        if not isinstance(entry, dict):
            raise ConfigError(path, where, "must be a table of ae_title, host, port, roles")
        values: dict[str, object] = {}
        for key, value in entry.items():
            check = _NODE_KEYS.get(key)
            if check is None:
                raise ConfigError(
                    path, f"{where}.{key}", f"unknown key (known: {', '.join(_NODE_KEYS)})"
                )
            try:
                values[key] = check(value)
            except ValueError as exc:
                raise ConfigError(path, f"{where}.{key}", str(exc)) from None
        missing = [key for key in ("ae_title", "host", "port") if key not in values]
        if missing:
            raise ConfigError(path, where, f"needs {', '.join(missing)}")
        nodes.append(PacsNode(name=name, **values))  # type: ignore[arg-type]
    return tuple(nodes)


_KEYS: dict[str, dict[str, tuple[str, Callable[[object], object]]]] = {
    "deid": {"profile": ("profile", _text), "clean_pixels": ("clean_pixels", _bool)},
    "pixels": {"ocr_engine": ("ocr_engine", _engine)},
    "raw": {"fastmri": ("fastmri", _bool)},
    "ingest": {
        "quiet_seconds": ("quiet_seconds", _seconds),
        "jobs": ("jobs", _jobs),
        "dask_address": ("dask_address", dask_address),
        "chunk_deadline_seconds": ("chunk_deadline_seconds", _deadline),
    },
    "review": {
        "spot_check_share": ("spot_check_share", _share),
        "session_idle_seconds": ("session_idle_seconds", _lifetime),
        "login_token_seconds": ("login_token_seconds", _lifetime),
    },
    "release": {"name": ("release_name", _text), "splits": ("splits", _splits)},
    "schedule": {"cron": ("cron", _cron)},
    "catalog": {"url": ("catalog_url", _catalog_url)},
    "prefect": {"api_url": ("prefect_api_url", _api_url)},
    "deface": {"enabled": ("deface", _bool), "rules": ("deface_rules", _text)},
}


def load_config(path: Path) -> WorkspaceConfig:
    """Read and check ``path``; raise :class:`ConfigError` naming the first fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot be read: {exc}") from None
    values: dict[str, object] = {}
    for section, entries in data.items():
        if section == "listen":
            values["listen"] = _listen(path, entries)
            continue
        if section == "pacs":
            values["pacs"] = _pacs(path, entries)
            continue
        known = _KEYS.get(section)
        if known is None:
            sections = ", ".join([*_KEYS, "listen", "pacs"])
            raise ConfigError(path, section, f"unknown section (known: {sections})")
        if not isinstance(entries, dict):
            raise ConfigError(path, section, "must be a [section] of keys")
        for key, value in entries.items():
            if key not in known:
                raise ConfigError(
                    path, f"{section}.{key}", f"unknown key (known: {', '.join(known)})"
                )
            name, check = known[key]
            try:
                values[name] = check(value)
            except ValueError as exc:
                raise ConfigError(path, f"{section}.{key}", str(exc)) from None
    if "profile" in values:
        values["profile"] = _check_profile(path, str(values["profile"]))
    if values.get("deface_rules"):
        site = path.parent / str(values["deface_rules"])
        if not site.is_file():
            raise ConfigError(
                path, "deface.rules", f"the defacing rules file {site} does not exist"
            )
        values["deface_rules"] = str(site.resolve())
    return WorkspaceConfig(source=path, **values)  # type: ignore[arg-type]


def _check_profile(path: Path, profile: str) -> str:
    """A shipped profile's name, or a site profile's path (relative to the config's folder)."""
    from pipeline.rulefiles import rules_root

    shipped = rules_root() / "dicom" / f"{profile}.yaml"
    if "/" not in profile and not profile.endswith((".yaml", ".yml")):
        if shipped.is_file():
            return profile
        available = sorted(p.stem for p in (rules_root() / "dicom").glob("*.yaml"))
        raise ConfigError(
            path, "deid.profile", f"no profile {profile!r}; available: {', '.join(available)}"
        )
    site = path.parent / profile
    if not site.is_file():
        raise ConfigError(path, "deid.profile", f"the site profile {site} does not exist")
    return str(site.resolve())
