"""docker-compose.yml is checked with `docker compose config` where a compose CLI exists.
No Docker engine runs on these machines; the suite never needs one."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no docker compose CLI on this machine")
    out = subprocess.run([*cmd, "-f", str(REPO / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "IDRES_DSN: postgresql://idres:" in out.stdout and "postgres:18" in out.stdout


def test_dockerfile_installs_the_package_and_serves() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in text and 'CMD ["idres", "serve"]' in text
    assert "USER idres" in text
