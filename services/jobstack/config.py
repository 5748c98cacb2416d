"""Service configuration: config.ini, then ENV_<KEY> variables, then the broker credentials.

The credentials come either from AMQP_URL (or AMQP_URL_FILE), a URL that also says where the
broker is, or from AMQP_USERNAME_FILE and AMQP_PASSWORD_FILE: one value per file, the way
Kubernetes mounts the keys of a Secret (a Messaging Topology Operator `User` keeps `username` and
`password`, not a URL), with host, port, vhost and TLS from config.ini.

Every problem is raised as ConfigError with one sentence that names the file, key or variable,
so the service can print it on one line and exit without a traceback.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import socket
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit


class ConfigError(Exception):
    """Invalid or unreadable configuration; the message is meant for people."""


def setting(default: Any, *, minimum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    return dataclasses.field(default=default, metadata={"minimum": minimum, "choices": choices})


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Keys both services understand. Field names are the (lower-case) config.ini keys."""

    host: str = "localhost"
    port: int = setting(5672, minimum=1)
    username: str = "guest"
    password: str = "guest"  # noqa: S105 - RabbitMQ's own default account, loopback-only there
    vhost: str = "/"
    tls: bool = False
    tls_ca_file: str = ""
    heartbeat: int = setting(30, minimum=0)
    connect_timeout: float = setting(60.0, minimum=0)
    jobs_queue: str = "jobstack.jobs"
    jobs_queue_type: str = setting("quorum", choices=("quorum", "classic"))
    dead_letter_exchange: str = "jobstack.dlx"
    dead_letter_queue: str = "jobstack.jobs.dead"
    # The durable stream every user_interface reads jobs and results from (docs/architecture.md).
    results_stream: str = "jobstack.results"
    max_job_seconds: int = setting(60, minimum=0)
    http_port: int = setting(8080, minimum=0)
    http_address: str = "0.0.0.0"
    log_format: str = setting("json", choices=("json", "text"))
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"))
    shutdown_grace_seconds: float = setting(30.0, minimum=0)
    # HTTP hygiene: a client gets this long to send a request's headers, then its body.
    http_header_timeout: float = setting(10.0, minimum=0.1)
    http_body_timeout: float = setting(10.0, minimum=0.1)
    http_max_connections: int = setting(256, minimum=1)
    instance_id: str = ""

    def with_instance_id(self: S) -> S:
        """Fill instance_id with the host name (the pod name in Kubernetes) and pid when unset."""
        if self.instance_id:
            return self
        return dataclasses.replace(self, instance_id=f"{socket.gethostname()}-{os.getpid()}")


S = TypeVar("S", bound=ServiceSettings)


def _convert(raw: str, kind: type, field: dataclasses.Field, source: str) -> Any:
    """Turn the text of one key into the field's type, or raise ConfigError naming source."""
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                value: Any = True
            elif lowered in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        else:
            value = text
    except ValueError:
        article = "an" if kind is int else "a"
        raise ConfigError(f"{source} must be {article} {kind.__name__}, got {raw!r}") from None
    minimum = field.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{source} must be >= {minimum:g}, got {raw!r}")
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{source} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _read_section(path: Path, section: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except configparser.Error as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid INI: {first_line}") from None
    if not parser.has_section(section):
        raise ConfigError(f"config file {path} has no [{section}] section")
    return dict(parser.items(section))


def _amqp_url_values(url: str) -> dict[str, Any]:
    """Host, port, credentials, vhost and TLS from an amqp:// or amqps:// URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(
            f"AMQP_URL must look like amqp[s]://user:password@host:port/vhost, got scheme {parts.scheme!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("AMQP_URL has an invalid port") from None
    tls = parts.scheme == "amqps"
    values: dict[str, Any] = {"host": parts.hostname, "port": port or (5671 if tls else 5672), "tls": tls}
    if parts.username is not None:
        values["username"] = unquote(parts.username)
    if parts.password is not None:
        values["password"] = unquote(parts.password)
    # Same rule as pika.URLParameters: an empty path or "/" means the default vhost "/".
    values["vhost"] = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return values


def _read_url_file(path: str | None) -> str:
    """AMQP_URL_FILE: the URL in a file, e.g. a Secret key mounted as a volume (no secret in the environment)."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"AMQP_URL_FILE {path} cannot be read: {getattr(error, 'strerror', None) or error}") from None


# The credential files and the settings each one fills.
CREDENTIAL_FILES = {"AMQP_USERNAME_FILE": "username", "AMQP_PASSWORD_FILE": "password"}


def _read_credential_file(variable: str, path: str) -> str:
    """One credential from the file that variable names: its first line, which must not be empty.

    A mounted Secret key holds the value as written; only a trailing line break (an editor's, or
    `echo`'s) is dropped, never other whitespace, which may belong to a password.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{variable} {path} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"{variable} {path} is empty")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{variable} {path} holds more than one line; it must hold the value alone")
    return value


def _credential_file_values(environ: Mapping[str, str]) -> dict[str, str]:
    """username and password from AMQP_USERNAME_FILE and AMQP_PASSWORD_FILE: both or neither."""
    given = {variable: environ[variable] for variable in CREDENTIAL_FILES if environ.get(variable)}
    if not given:
        return {}
    missing = sorted(set(CREDENTIAL_FILES) - set(given))
    if missing:
        present = ", ".join(sorted(given))
        raise ConfigError(f"{missing[0]} must be set together with {present} (one file per credential)")
    return {CREDENTIAL_FILES[variable]: _read_credential_file(variable, path) for variable, path in given.items()}


def load_settings(
    settings_class: type[S],
    path: Path,
    section: str,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Settings from config.ini, overridden by <PREFIX>_<KEY>, then by the credentials: AMQP_URL (or
    AMQP_URL_FILE), or AMQP_USERNAME_FILE and AMQP_PASSWORD_FILE. A URL and credential files together
    are refused: which one wins would be a guess."""
    environ = os.environ if environ is None else environ
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    kinds = typing.get_type_hints(settings_class)
    values: dict[str, Any] = {}
    for key, raw in _read_section(path, section).items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"config file {path}: unknown key {key!r} in [{section}] (known keys: {known})")
        values[key] = _convert(raw, kinds[key], fields[key], f"config file {path}: key {key!r} in [{section}]")
    for key, field in fields.items():
        variable = f"{env_prefix}_{key.upper()}"
        if variable in environ:
            values[key] = _convert(environ[variable], kinds[key], field, f"environment variable {variable}")
    credentials = _credential_file_values(environ)
    url_variable = next((name for name in ("AMQP_URL", "AMQP_URL_FILE") if environ.get(name)), None)
    if credentials and url_variable:
        raise ConfigError(
            f"{url_variable} and AMQP_USERNAME_FILE/AMQP_PASSWORD_FILE are both set: set one of them "
            "(a URL carries its own credentials)"
        )
    amqp_url = environ.get("AMQP_URL") or _read_url_file(environ.get("AMQP_URL_FILE"))
    if amqp_url:
        values.update(_amqp_url_values(amqp_url))
    values.update(credentials)
    if values.get("tls_ca_file") and not Path(values["tls_ca_file"]).is_file():
        raise ConfigError(f"tls_ca_file {values['tls_ca_file']} does not exist")
    return settings_class(**values).with_instance_id()
