"""``DOManager``: the seed's DigitalOcean facade, over the ``digitalocean`` provider.

```python
from projectdeployer import DOManager

snapshot_id = DOManager.get_or_create_template(region="lon1")
server = DOManager.create_server("myserver", "lon1", cpu=2, memory=4096)  # from the template
legacy = DOManager.create_droplet("oldstyle", "lon1")  # from the base image, provisioned
DOManager.delete_template()
```

The token and endpoint come from ``DIGITALOCEAN_API_TOKEN`` and ``DIGITALOCEAN_API_URL``, as for
deploys. Servers made here belong to no project: they carry the environment tag
``pd:projectdeployer:manager`` and are reached with that environment's key pair
(``{home}/projectdeployer/manager/secrets/ssh``); :meth:`DOManager.status` counts them per zone.
"""

from __future__ import annotations

from collections import Counter

from ..core.provider import Server, ServerSpec
from ..providers.digitalocean.provider import DigitalOceanProvider

#: The project/environment that servers made through the facade belong to.
PROJECT, ENV = "projectdeployer", "manager"


class DOManager:
    """The seed's class-level DigitalOcean helpers (see the module)."""

    #: The images a template made here holds (none: Docker and the directories only).
    template_images: tuple[str, ...] = ()

    @classmethod
    def _provider(cls, *, templates: bool = True) -> DigitalOceanProvider:
        provider = DigitalOceanProvider(log=lambda line: print(line, flush=True))
        provider.template_images = cls.template_images
        provider.use_templates = templates
        return provider

    @classmethod
    def get_or_create_template(cls, region: str) -> int:
        """The id of ``region``'s template snapshot, made first when there is none."""
        return cls._provider().get_or_create_template(PROJECT, ENV, region)

    @classmethod
    def delete_template(cls) -> list[str]:
        """Remove every template snapshot and template droplet; the names removed."""
        return cls._provider().delete_template()

    @classmethod
    def create_server(cls, name: str, region: str, cpu: int = 1, memory: int = 1024) -> Server:
        """A droplet named ``name`` from ``region``'s template (fast: ready when it boots)."""
        return cls._provider().create_server(PROJECT, ENV, ServerSpec(zone=region, cpu=cpu, memory=memory), name=name)

    @classmethod
    def create_droplet(cls, name: str, region: str, cpu: int = 1, memory: int = 1024) -> Server:
        """A droplet named ``name`` from the base image, provisioned over SSH (the seed's legacy way)."""
        return cls._provider(templates=False).create_server(PROJECT, ENV, ServerSpec(zone=region, cpu=cpu, memory=memory), name=name)

    @classmethod
    def destroy_server(cls, server: Server) -> None:
        """Destroy a droplet made here."""
        cls._provider().destroy_server(server)

    @classmethod
    def servers(cls) -> list[Server]:
        """The droplets made here, as the API lists them now."""
        return cls._provider().list_servers(PROJECT, ENV)

    @classmethod
    def status(cls) -> dict[str, dict[str, int]]:
        """Per zone: how many of those droplets are ``active``, ``reserve``, ``destroying``, and the total."""
        found: dict[str, Counter[str]] = {}
        for server in cls.servers():
            found.setdefault(server.zone, Counter())[str(server.tags.get("state", "active"))] += 1
        return {zone: {"active": c["active"], "reserve": c["reserve"], "destroying": c["destroying"], "total": sum(c.values())} for zone, c in sorted(found.items())}


__all__ = ["DOManager"]
