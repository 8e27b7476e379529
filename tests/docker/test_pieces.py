"""Separate settings for apps that want them (issue 12, item 4): a python app reads
POSTGRES_SERVER/PORT/USER/DB from ``"auto:postgres.*"`` pieces and, with
``secrets_in_env = true``, its password from the environment, put there by the entrypoint
wrapper for its process only. ``docker inspect``, the process list and the image hold no
password; the app is the process a stop's SIGTERM reaches.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from projectdeployer import ProjectDeployer
from projectdeployer.core.runtime import LABEL_PROJECT, LABEL_SERVICE
from projectdeployer.deploy.containers import ENV_WRAPPER_NAME
from projectdeployer.secrets.resolver import ResourceResolver as RR
from tests.docker.conftest import remove_project, wait_for

pytestmark = pytest.mark.docker

APP = Path(__file__).resolve().parent / "apps" / "pieces"


def test_an_app_reads_pieces_and_its_password_from_the_environment_which_docker_inspect_never_shows(tmp_path: Path, bed: dict[str, str], docker_client) -> None:  # type: ignore[no-untyped-def]
    name = f"pc{os.getpid() % 10000}{int(time.time() * 1000) % 100000}"
    source = tmp_path / "api"
    shutil.copytree(APP, source)
    path = tmp_path / "pieces.toml"
    path.write_text(
        f'[project]\nname = "{name}"\n\n[images]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in bed.items())
        + '\n[environments.dev]\nprovider = "local"\n'
        + '\n[services.postgres]\ntype = "postgres"\n'
        + f'\n[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
        + 'health_path = "/health"\ndepends_on = ["postgres"]\nsecrets_in_env = true\n'
        + '\n[services.api.env_vars]\nPOSTGRES_SERVER = "auto:postgres.host"\nPOSTGRES_PORT = "auto:postgres.port"\n'
        + 'POSTGRES_USER = "auto:postgres.user"\nPOSTGRES_DB = "auto:postgres.database"\nPOSTGRES_PASSWORD = "auto:postgres.password"\n'
    )
    project = ProjectDeployer(str(path), path=path)
    try:
        project.deploy(env="dev", log=lambda line: None)
        password = (Path(os.environ["PROJECTDEPLOYER_HOME"]) / name / "dev" / "secrets" / "postgres" / "postgres_password").read_text()
        assert len(password) >= 32
        (api,) = docker_client.containers.list(filters={"label": [f"{LABEL_PROJECT}={name}", f"{LABEL_SERVICE}=api"]})

        # The app connected with the pieces and the password from its environment.
        line = wait_for(lambda: next((x for x in api.logs().decode().splitlines() if x.startswith("REPORT ")), None), what="the app's report")
        report = json.loads(line[len("REPORT ") :])
        assert report["current_user"] == RR.get_db_user(name, "dev", "postgres") == report["POSTGRES_USER"]
        assert report["current_database"] == RR.get_db_name(name, "dev", "postgres") == report["POSTGRES_DB"]
        assert report["POSTGRES_SERVER"] == "nginx" and report["POSTGRES_PORT"] == str(RR.get_service_port(name, "dev", "postgres"))
        assert report["password_from_env"] and report["same_as_file"] and report["password_file"].startswith("/run/secrets/pd/")

        # Not in the container's configuration, nor in any container's, nor in a log.
        config = api.attrs["Config"]
        assert config["Entrypoint"][:2] == ["/bin/sh", "-c"] and config["Entrypoint"][3] == ENV_WRAPPER_NAME
        assert config["Cmd"] == ["python", "app.py"]
        assert not any(e.startswith("POSTGRES_PASSWORD=") for e in config["Env"])
        assert any(e.startswith("POSTGRES_PASSWORD_FILE=/run/secrets/pd/") for e in config["Env"])
        for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
            assert password not in json.dumps(container.attrs), f"the password in docker inspect of {container.name}"
            assert password not in container.logs().decode(errors="replace")
        # Nor in process arguments; the wrapper is gone (exec): the app is its process.
        processes = api.top(ps_args="-eo pid,args")["Processes"]
        assert not any(password in " ".join(p) for p in processes)
        # (docker-init, PID 1, keeps the argv it was given, wrapper script included: names only.)
        assert not any(p[-1].startswith("/bin/sh") for p in processes), processes
        assert any(p[-1] == "python app.py" for p in processes), processes
        # Nor in other processes of the container: `docker exec` does not run the wrapper.
        code, out = api.exec_run(["env"])
        assert code == 0 and b"POSTGRES_PASSWORD_FILE=" in out and b"POSTGRES_PASSWORD=" not in out
        # Nor in the image.
        image = docker_client.images.get(api.attrs["Image"])
        assert password not in json.dumps(image.attrs) and password not in json.dumps(image.history())

        # A stop's SIGTERM reaches the app (not a shell that would ignore it until the kill).
        started = time.monotonic()
        api.stop(timeout=30)
        assert time.monotonic() - started < 10
        assert "SIGTERM received" in api.logs().decode()
    finally:
        remove_project(docker_client, name)
