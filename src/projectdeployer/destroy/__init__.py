"""``destroy --env``: take an environment down (its plan, then its containers, network, images and state)."""
