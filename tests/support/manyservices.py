"""Projects of many web services, for measuring how deploy times grow with the service count
(bench/many_services.py, tests/docker/test_many_services.py).

Every service runs the same image (examples/python-api, built once as a one-service project),
so what is measured is the deploy engine, not the builds: the services are ``generic`` with a
ready ``image``, which a deploy never builds.
"""

from __future__ import annotations

from pathlib import Path

from projectdeployer import ProjectDeployer

from .bed import images_table

#: The example app every service runs (``python app.py``, ``GET /health``).
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-api"


def service_names(count: int) -> list[str]:
    """``web00``, ``web01``, ...: sorted as they are numbered."""
    return [f"web{i:02d}" for i in range(count)]


def many_services_toml(name: str, count: int, image: str, env: str = "dev") -> str:
    """A project file: ``count`` web services running ``image`` on this machine's engine
    (no domain, so the sidecar publishes no port; each service publishes its app port)."""
    text = f'[project]\nname = "{name}"\n\n{images_table()}\n[environments.{env}]\nprovider = "local"\n'
    for service in service_names(count):
        text += f'\n[services.{service}]\ntype = "generic"\nimage = "{image}"\ncommand = "python app.py"\nport = 8000\nhealth_path = "/health"\n'
    return text


def image_project_toml(name: str, source: Path = EXAMPLE) -> str:
    """A one-service project whose build makes the image the many-service projects share
    (tagged ``{name}-api:latest`` and labelled with project ``name``)."""
    return (
        f'[project]\nname = "{name}"\n\n{images_table()}\n[environments.dev]\nprovider = "local"\n\n'
        f'[services.api]\ntype = "python"\nbuild_context = "{source}"\ncommand = "python app.py"\nport = 8000\n'
    )


def build_shared_image(workdir: Path, name: str) -> str:
    """Build examples/python-api once as project ``name``; returns the image tag."""
    path = workdir / f"{name}.toml"
    path.write_text(image_project_toml(name))
    built = ProjectDeployer(str(path), path=path).build(env="dev", log=lambda line: None)
    return built["api"].tag


__all__ = ["EXAMPLE", "build_shared_image", "image_project_toml", "many_services_toml", "service_names"]
