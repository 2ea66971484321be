"""The deployment files agree with each other and with the code: docker-compose.yml runs every process
type of the Procfile with the environment settings.py reads, the Dockerfile builds what the compose file
runs, and docs/configuration.md lists every setting. Plain file parsing: no database, no Docker."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROCESS_TYPES = {"web", "worker", "beat", "hostd", "websockify", "migrate", "redis", "postgres"}
ENGINES = {"redis", "postgres"}
CORE_ENVIRONMENT = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "VIREO_FERNET_KEYS",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "VIREO_HTTPS",
}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _app_services() -> dict[str, dict]:
    return {name: svc for name, svc in _services().items() if name not in ENGINES}


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def settings_environment_names() -> set[str]:
    """Every variable name project/settings.py reads: env.str("X"), env.list("X"), env("X"), os.environ."""
    tree = ast.parse((ROOT / "project" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        func = node.func
        reads_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute)
            and (
                (isinstance(func.value, ast.Name) and func.value.id == "env")
                or ast.unparse(func) in {"os.environ.get", "os.getenv"}
            )
        )
        if reads_env:
            names.add(first.value)
    return names


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_settings_parser_finds_the_known_variables():
    names = settings_environment_names()
    assert names >= CORE_ENVIRONMENT
    assert {"VIREO_DATA_DIR", "CELERY_BROKER_URL", "VIREO_HOSTD_LEASE_SECONDS"} <= names


def test_compose_names_every_process_type():
    assert set(_services()) >= PROCESS_TYPES


def test_procfile_processes_are_all_in_compose():
    assert set(procfile()) == {"web", "worker", "beat", "hostd", "websockify"}
    assert set(procfile()) <= set(_services())


@pytest.mark.parametrize("name", ["web", "worker", "beat", "hostd", "websockify"])
def test_compose_runs_the_same_program_as_the_procfile(name):
    """The words of the Procfile command that are not options or ${...} appear in the compose command."""
    compose_words = _command(_services()[name])
    words = [w for w in procfile()[name].split() if not w.startswith("-") and "$" not in w]
    for word in words:
        assert word in compose_words, f"{name}: {word!r} of the Procfile is not in {compose_words}"


def test_migrate_runs_migrations():
    command = _command(_services()["migrate"])
    assert command[:3] == ["python", "manage.py", "migrate"]


def test_app_services_share_one_image_and_build():
    apps = _app_services()
    assert set(apps) == PROCESS_TYPES - ENGINES
    images = {(svc.get("image"), str(svc.get("build"))) for svc in apps.values()}
    assert len(images) == 1, images
    image, build = images.pop()
    assert image and build not in ("", "None")


def test_app_services_share_the_core_environment():
    expected = set(_environment(_services()["web"]))
    assert expected >= CORE_ENVIRONMENT
    for name, svc in _app_services().items():
        assert set(_environment(svc)) == expected, name


def test_compose_passes_only_variables_that_settings_reads():
    known = settings_environment_names()
    for name, svc in _app_services().items():
        unknown = set(_environment(svc)) - known
        assert not unknown, f"{name} passes {sorted(unknown)}, which project/settings.py never reads"


def test_compose_points_the_app_at_its_engines():
    env = _environment(_services()["web"])
    assert re.fullmatch(
        r"postgres://vireo:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/vireo", env["DATABASE_URL"]
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    postgres_env = _environment(_services()["postgres"])
    assert postgres_env["POSTGRES_USER"] == "vireo"
    assert postgres_env["POSTGRES_DB"] == "vireo"


def test_secrets_come_from_the_env_file_and_are_required():
    env = _environment(_services()["web"])
    for name in ("SECRET_KEY", "VIREO_FERNET_KEYS"):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required from .env, not defaulted"


def test_engines_are_persistent_and_health_checked():
    services = _services()
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ENGINES:
        assert services[name].get("healthcheck"), name
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])


def test_app_services_wait_for_migrations_and_engines():
    services = _services()
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat", "hostd", "websockify"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_only_web_and_the_console_proxy_publish_ports_on_loopback():
    services = _services()
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert sorted(published) == ["web", "websockify"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)


def test_dockerfile_builds_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b", text, re.M)
    for needed in ("libvirt-dev", "pkg-config", "gcc", "nodejs", "npm"):
        assert re.search(rf"apt-get install[^\n]*\b{re.escape(needed)}\b", text), needed
    assert "pip install ." in text
    assert "npm ci" in text
    assert "collectstatic" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", "node_modules", "data", ".git"} <= ignored


def test_configuration_doc_lists_every_setting():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in settings_environment_names() if f"`{name}`" not in doc)
    assert not missing, f"docs/configuration.md does not describe {missing}"


def test_makefile_has_run_and_test_and_ci_calls_make_test():
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:", (ROOT / "Makefile").read_text(), re.M))
    assert {"run", "test"} <= targets
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\b", ci, re.M)
