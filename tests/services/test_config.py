"""Configuration: config.ini keys, environment overrides, AMQP_URL, and errors that name the culprit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pika
import pytest
from jobstack.config import ConfigError, load_settings
from jobstack.engine import EngineSettings

from tools.rabbitmq_local import free_port

from .processes import ROOT, checkout_environment


def write_ini(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


def test_original_config_ini_keys_are_read_case_insensitively(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\nHOST = broker.example\nPORT = 5673\n")
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ={})
    assert (settings.host, settings.port) == ("broker.example", 5673)


def test_environment_overrides_file_and_amqp_url_overrides_both(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\nHOST = a\nPORT = 1\nprefetch = 3\n")
    environ = {"ENGINE_HOST": "b", "ENGINE_PREFETCH": "7", "AMQP_URL": "amqps://u%40x:p%2Fw@c:5999/v%2Fh"}
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert (settings.host, settings.port, settings.tls) == ("c", 5999, True)
    assert (settings.username, settings.password, settings.vhost) == ("u@x", "p/w", "v/h")
    assert settings.prefetch == 7


def test_operator_connection_string_means_default_vhost(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\n")
    url = "amqp://default_user_x:secret@jobstack.jobstack.svc:5672/"
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ={"AMQP_URL": url})
    assert (settings.host, settings.vhost, settings.port) == ("jobstack.jobstack.svc", "/", 5672)


def test_amqp_url_file_is_read_when_amqp_url_is_unset(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\nHOST = from-file\n")
    secret = tmp_path / "connection_string"
    secret.write_text("amqp://user:pw@broker.svc:5672/\n")
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ={"AMQP_URL_FILE": str(secret)})
    assert (settings.host, settings.username, settings.password) == ("broker.svc", "user", "pw")


@pytest.mark.parametrize(
    ("ini", "environ", "expected"),
    [
        ("[engine]\nPORT = five\n", {}, "key 'port' in [engine] must be an int"),
        ("[engine]\nprefetch = 0\n", {}, "key 'prefetch' in [engine] must be >= 1"),
        ("[engine]\nprefech = 10\n", {}, "unknown key 'prefech' in [engine]"),
        ("[engine]\nlog_format = xml\n", {}, "must be one of json, text"),
        ("[engin]\nHOST = x\n", {}, "has no [engine] section"),
        ("HOST = x\n", {}, "is not valid INI"),
        ("[engine]\n", {"ENGINE_HTTP_PORT": "http"}, "environment variable ENGINE_HTTP_PORT must be an int"),
        ("[engine]\n", {"AMQP_URL": "http://x"}, "AMQP_URL must look like amqp"),
        ("[engine]\n", {"AMQP_URL_FILE": "/nonexistent/url"}, "AMQP_URL_FILE /nonexistent/url cannot be read"),
    ],
)
def test_invalid_settings_are_refused_naming_the_key(
    tmp_path: Path, ini: str, environ: dict[str, str], expected: str
) -> None:
    path = write_ini(tmp_path, ini)
    with pytest.raises(ConfigError, match=None) as caught:
        load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert expected in str(caught.value)


def credential_files(tmp_path: Path, username: str, password: str) -> dict[str, str]:
    """The two files a mounted User Secret gives a pod (keys username and password), as variables."""
    directory = tmp_path / "broker"
    directory.mkdir(exist_ok=True)
    (directory / "username").write_text(username)
    (directory / "password").write_text(password)
    return {"AMQP_USERNAME_FILE": str(directory / "username"), "AMQP_PASSWORD_FILE": str(directory / "password")}


def test_credential_files_give_username_and_password_and_config_ini_the_rest(tmp_path: Path) -> None:
    ini = "[engine]\nhost = jobstack.jobstack.svc\nport = 5671\nvhost = jobstack\ntls = true\n"
    path = write_ini(tmp_path, ini)
    # The operator writes the values without a line break; a hand-made file usually ends with one.
    environ = credential_files(tmp_path, "engine-x1Yz", " pass word\n")
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert (settings.username, settings.password) == ("engine-x1Yz", " pass word")
    assert (settings.host, settings.port, settings.vhost, settings.tls) == (
        "jobstack.jobstack.svc",
        5671,
        "jobstack",
        True,
    )


def test_credential_files_override_credentials_of_the_environment(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\nusername = from-ini\n")
    environ = {"ENGINE_USERNAME": "from-env", "ENGINE_PASSWORD": "env-pw", **credential_files(tmp_path, "u", "p")}
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert (settings.username, settings.password) == ("u", "p")


def test_amqp_url_still_works_without_credential_files(tmp_path: Path) -> None:
    path = write_ini(tmp_path, "[engine]\n")
    environ = {"AMQP_URL": "amqps://a:b@broker:5671/v", "AMQP_USERNAME_FILE": "", "AMQP_PASSWORD_FILE": ""}
    settings = load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert (settings.username, settings.password, settings.host, settings.tls) == ("a", "b", "broker", True)


@pytest.mark.parametrize(
    ("files", "extra", "expected"),
    [
        ({"username": "u"}, {}, "AMQP_PASSWORD_FILE must be set together with AMQP_USERNAME_FILE"),
        ({"password": "p"}, {}, "AMQP_USERNAME_FILE must be set together with AMQP_PASSWORD_FILE"),
        ({"username": "u", "password": ""}, {}, "AMQP_PASSWORD_FILE {dir}/password is empty"),
        ({"username": "\n", "password": "p"}, {}, "AMQP_USERNAME_FILE {dir}/username is empty"),
        ({"username": "u", "password": "one\ntwo\n"}, {}, "AMQP_PASSWORD_FILE {dir}/password holds more than one line"),
        ({"username": "u", "password": "p"}, {"AMQP_URL": "amqp://a:b@h/"}, "AMQP_URL and AMQP_USERNAME_FILE"),
        ({"username": "u", "password": "p"}, {"AMQP_URL_FILE": "/x"}, "AMQP_URL_FILE and AMQP_USERNAME_FILE"),
    ],
)
def test_bad_credential_files_are_one_error_naming_the_variable(
    tmp_path: Path, files: dict[str, str], extra: dict[str, str], expected: str
) -> None:
    directory = tmp_path / "broker"
    directory.mkdir()
    environ = dict(extra)
    for key, text in files.items():
        (directory / key).write_text(text)
        environ[f"AMQP_{key.upper()}_FILE"] = str(directory / key)
    path = write_ini(tmp_path, "[engine]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(EngineSettings, path, "engine", "ENGINE", environ=environ)
    assert expected.format(dir=directory) in str(caught.value)


def test_unreadable_credential_file_is_named_with_its_path(tmp_path: Path) -> None:
    environ = credential_files(tmp_path, "u", "p")
    environ["AMQP_PASSWORD_FILE"] = str(tmp_path / "missing" / "password")
    with pytest.raises(ConfigError) as caught:
        load_settings(EngineSettings, write_ini(tmp_path, "[engine]\n"), "engine", "ENGINE", environ=environ)
    assert str(caught.value) == (
        f"AMQP_PASSWORD_FILE {tmp_path / 'missing' / 'password'} cannot be read: No such file or directory"
    )


@pytest.mark.parametrize("name", ["engine", "user_interface"])
def test_a_service_with_a_missing_credential_file_exits_2_with_one_line(name: str, tmp_path: Path) -> None:
    section = "engine" if name == "engine" else "user-interface"
    path = write_ini(tmp_path, f"[{section}]\nhost = 127.0.0.1\n")
    env = {"AMQP_USERNAME_FILE": str(tmp_path / "nope"), "AMQP_PASSWORD_FILE": str(tmp_path / "nope")}
    result = run_service(name, "--config", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{name}: configuration error: AMQP_USERNAME_FILE {tmp_path / 'nope'} cannot be read: No such file or directory"
    )


def run_service(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = ROOT / "services" / name / f"{name}.py"
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": checkout_environment()["PYTHONPATH"], **(env or {})}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=environ, timeout=60)


@pytest.mark.parametrize("name", ["engine", "user_interface"])
def test_missing_config_file_exits_2_with_one_line(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    result = run_service(name, "--config", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{name}: configuration error: config file {missing} does not exist"


@pytest.mark.parametrize("name", ["engine", "user_interface"])
def test_bad_value_in_config_exits_2_naming_file_and_key(name: str, tmp_path: Path) -> None:
    section = "engine" if name == "engine" else "user-interface"
    path = write_ini(tmp_path, f"[{section}]\nHOST = localhost\nPORT = not-a-port\n")
    result = run_service(name, "--config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and "'port'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["engine", "user_interface"])
def test_unreachable_broker_exits_1_naming_host_after_retry_budget(name: str) -> None:
    prefix = name.upper()
    port = free_port()  # nothing listens there
    env = {
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
        f"{prefix}_CONNECT_TIMEOUT": "2",
        f"{prefix}_HTTP_PORT": "0",
        f"{prefix}_LOG_LEVEL": "error",
    }
    result = run_service(name, env=env)
    assert result.returncode == 1
    assert f"cannot connect to RabbitMQ at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_conflicting_jobs_queue_stops_the_engine_with_one_clear_line(amqp_url: str, services: Any) -> None:
    # Someone declared the jobs queue as classic: retrying cannot fix that, so say so and exit.
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().queue_declare("jobstack.jobs", durable=True, arguments={"x-queue-type": "classic"})
    connection.close()
    engine = services("engine", amqp_url, wait_ready=False)
    assert engine.wait(timeout=30) == 1
    assert "refused our topology" in engine.log_text() and "jobstack.jobs" in engine.log_text()


def test_the_services_are_an_installable_package(tmp_path: Path) -> None:
    # Built from a copy, so the checkout gets no build directory; pip fetches setuptools to build.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "services", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert sorted(p.name for p in (target / "jobstack").glob("*.py")) == sorted(
        p.name for p in (ROOT / "services" / "jobstack").glob("*.py")
    )
    # The page's files travel with the package (package data, not Python).
    assert sorted(p.name for p in (target / "jobstack" / "static").iterdir()) == sorted(
        p.name for p in (ROOT / "services" / "jobstack" / "static").iterdir()
    )
    # The entry point runs from the installed package alone (this checkout's code is not on the path).
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)}
    missing = tmp_path / "nope.ini"
    result = subprocess.run(
        [sys.executable, str(ROOT / "services" / "engine" / "engine.py"), "--config", str(missing)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"engine: configuration error: config file {missing} does not exist",
    )
