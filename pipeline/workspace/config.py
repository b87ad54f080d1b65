"""``mricurate.toml``: what a site chooses, checked once when a workspace is opened.

The file is data: a commented template is written by ``mricurate init``
(:func:`template_text`), and :func:`load_config` refuses an unknown key, a
value of the wrong type or out of range, with the file, the key and the
reason, before any input is read.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class WorkspaceConfig:
    """A workspace's validated settings (the template documents each)."""

    profile: str = "research"
    clean_pixels: bool = True
    ocr_engine: str = "both"
    fastmri: bool = True
    quiet_seconds: float = 60.0
    jobs: int = 0
    spot_check_share: float = 0.02
    release_name: str = "mricurate release"
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cron: str = "0 2 * * *"
    catalog_url: str = ""
    prefect_api_url: str = ""
    deface: bool = True
    deface_rules: str = ""  # a site file (rules/deface/head.yaml's shape); empty: the shipped one
    source: Path | None = field(default=None, compare=False)


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


def _api_url(value: object) -> str:
    url = _text(value)
    if url and not url.startswith(("http://", "https://")):
        raise ValueError("must be empty or the http(s):// URL of a Prefect server's API")
    return url


_KEYS: dict[str, dict[str, tuple[str, Callable[[object], object]]]] = {
    "deid": {"profile": ("profile", _text), "clean_pixels": ("clean_pixels", _bool)},
    "pixels": {"ocr_engine": ("ocr_engine", _engine)},
    "raw": {"fastmri": ("fastmri", _bool)},
    "ingest": {"quiet_seconds": ("quiet_seconds", _seconds), "jobs": ("jobs", _jobs)},
    "review": {"spot_check_share": ("spot_check_share", _share)},
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
        known = _KEYS.get(section)
        if known is None:
            raise ConfigError(path, section, f"unknown section (known: {', '.join(_KEYS)})")
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
