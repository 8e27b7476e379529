"""The offline image bed's tags (tests/images/build.sh builds them from Debian packages): the
``[images]`` table the tests and benches give their projects, and the sandbox server image."""

from __future__ import annotations

#: ``[images]`` key -> the bed's tag.
BED_IMAGES = {
    "python": "pd-test/python:3.11",
    "node": "pd-test/node:18",
    "nginx": "pd-test/nginx:1.22",
    "postgres": "pd-test/postgres:15",
    "redis": "pd-test/redis:7",
}
#: sshd + its own dockerd: what the sandbox provider runs as a server.
SERVER_IMAGE = "pd-test/server:bookworm"


def images_table() -> str:
    """The ``[images]`` table of a project file using the bed."""
    return "[images]\n" + "".join(f'{key} = "{tag}"\n' for key, tag in BED_IMAGES.items())
