"""The regions and Droplet sizes the fake DigitalOcean offers, shaped as DigitalOcean's API
publishes them (``GET /v2/regions``, ``GET /v2/sizes``).

The Basic sizes and their prices are DigitalOcean's published ones (docs: Droplet pricing,
2026-12); the larger tiers the seed's auto-scaling reaches are CPU-Optimized (``c-*``) and
General Purpose (``g-*``) plans. A deployer reads them live from ``sizes.list()``: nothing here is
a contract of the product, only of the rehearsal.
"""

from __future__ import annotations

from typing import Any

#: slug -> human name; every one offers every size below.
REGIONS: dict[str, str] = {
    "ams3": "Amsterdam 3",
    "blr1": "Bangalore 1",
    "fra1": "Frankfurt 1",
    "lon1": "London 1",
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "sfo2": "San Francisco 2",
    "sfo3": "San Francisco 3",
    "sgp1": "Singapore 1",
    "syd1": "Sydney 1",
    "tor1": "Toronto 1",
}

#: The features DigitalOcean lists for its current regions.
REGION_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]

# slug, vCPUs, memory (MB), disk (GB), transfer (TB), $/month, description
_SIZES: list[tuple[str, int, int, int, float, float, str]] = [
    ("s-1vcpu-1gb", 1, 1024, 25, 1.0, 6.0, "Basic"),
    ("s-1vcpu-2gb", 1, 2048, 50, 2.0, 12.0, "Basic"),
    ("s-2vcpu-2gb", 2, 2048, 60, 3.0, 18.0, "Basic"),
    ("s-2vcpu-4gb", 2, 4096, 80, 4.0, 24.0, "Basic"),
    ("s-4vcpu-8gb", 4, 8192, 160, 5.0, 48.0, "Basic"),
    ("s-8vcpu-16gb", 8, 16384, 320, 6.0, 96.0, "Basic"),
    ("c-16", 16, 32768, 200, 9.0, 336.0, "CPU-Optimized"),
    ("g-16vcpu-64gb", 16, 65536, 200, 9.0, 504.0, "General Purpose"),
    ("c-32", 32, 65536, 400, 10.0, 672.0, "CPU-Optimized"),
]


def size_objects() -> list[dict[str, Any]]:
    """Every size as the API's ``size`` object (all available in every region)."""
    return [
        {
            "slug": slug,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "transfer": transfer,
            "price_monthly": monthly,
            "price_hourly": round(monthly / 672, 5),
            "regions": sorted(REGIONS),
            "available": True,
            "description": description,
            "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
        }
        for slug, vcpus, memory, disk, transfer, monthly, description in _SIZES
    ]


def size_object(slug: str) -> dict[str, Any] | None:
    """One size by slug, or ``None``."""
    return next((s for s in size_objects() if s["slug"] == slug), None)


def region_object(slug: str) -> dict[str, Any]:
    """One region as the API's ``region`` object."""
    return {"name": REGIONS[slug], "slug": slug, "features": list(REGION_FEATURES), "available": True, "sizes": [s[0] for s in _SIZES]}


def region_objects() -> list[dict[str, Any]]:
    """Every region."""
    return [region_object(slug) for slug in sorted(REGIONS)]
