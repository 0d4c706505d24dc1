"""Loading of typed YAML configs, shared by the edge node and the aggregator.

Precedence, lowest first: field defaults, the YAML file, environment
variables ``<PREFIX>SECTION__KEY`` (``__`` separates levels), then
command-line overrides. Unknown keys are errors, so a typo never silently
falls back to a default; every field carries a description, from which the
reference docs are generated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from formcheck_protocol.topics import TopicError, level

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """Configuration is invalid; the message is one line naming the field."""


class Section(BaseModel):
    """Base of every config section: unknown keys rejected, defaults validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def read_secret_file(path: Path, field: str) -> str:
    """The first line of a secret file (a compose secret, a systemd credential); ``field`` names it in the error."""
    try:
        secret = path.read_text().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(f"{field}: cannot read a password from {path}") from exc
    if not secret:
        raise ConfigError(f"{field}: {path} starts with an empty line")
    return secret


def validated_id(value: str, what: str) -> str:
    """An id usable as a topic level and an InfluxDB tag, for pydantic validators."""
    try:
        return level(value, what)
    except TopicError as exc:
        raise ValueError(str(exc)) from exc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: dict[str, str], prefix: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix):
            continue
        path = [p.lower() for p in key[len(prefix):].split("__") if p]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path:
            # YAML scalars so that "false", "30" and "null" mean what they say.
            node[path[-1]] = yaml.safe_load(value) if value else value
    return tree


def describe_error(exc: ValidationError) -> str:
    """One line for the operator naming every problem and its field (a fix should not reveal the next one)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "config"
        message = "required, it has no default" if error["type"] == "missing" else error["msg"]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def load_settings(
    model: type[ModelT],
    path: Path | None,
    overrides: dict[str, Any] | None,
    environ: dict[str, str] | None,
    env_prefix: str,
) -> ModelT:
    """Build ``model`` from file, environment and overrides; :class:`ConfigError` if invalid."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
        data = loaded or {}
    data = _merge(data, env_overrides(dict(os.environ if environ is None else environ), env_prefix))
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from exc


def example_yaml(model: type[BaseModel], title: str) -> str:
    """A commented YAML file with every field and its default."""
    lines = [f"# {title}. Shown values are the defaults; a key marked required has none and must be set."]

    def walk(section: type[BaseModel], indent: int) -> None:
        for name, field in section.model_fields.items():
            pad = "  " * indent
            annotation = field.annotation
            lines.append(f"{pad}# {field.description}")
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                lines.append(f"{pad}{name}:")
                walk(annotation, indent + 1)
                continue
            if field.is_required():
                example = f", e.g. {field.examples[0]}" if field.examples else ""
                lines.append(f"{pad}{name}:  # required{example}")
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            rendered = yaml.safe_dump(default, default_flow_style=True, sort_keys=False).strip()
            lines.append(f"{pad}{name}: {rendered.removesuffix('...').strip()}")

    walk(model, 0)
    return "\n".join(lines) + "\n"
