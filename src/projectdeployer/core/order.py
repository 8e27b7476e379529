"""Startup order: dependencies first; services of one order form a group deployed in parallel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(depends_on: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, a]``, or ``None``. Unknown names are ignored."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in depends_on.get(node, ()):
            if dep not in depends_on:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in depends_on:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def startup_orders(depends_on: Mapping[str, Sequence[str]], manual: Mapping[str, int | None]) -> dict[str, int]:
    """Each service's order: the manual value, else ``max(order of dependencies) + 1``, else 1.

    ``depends_on`` must be acyclic and name known services (validated before).
    """
    orders: dict[str, int] = {}

    def order_of(name: str) -> int:
        if name not in orders:
            fixed = manual.get(name)
            if fixed is not None:
                orders[name] = fixed
            else:
                deps = depends_on.get(name, ())
                orders[name] = max((order_of(d) for d in deps), default=0) + 1
        return orders[name]

    for name in depends_on:
        order_of(name)
    return orders


def startup_groups(orders: Mapping[str, int]) -> list[list[str]]:
    """Services grouped by order, lowest first; within a group, in the given (file) order."""
    groups: dict[int, list[str]] = {}
    for name, order in orders.items():
        groups.setdefault(order, []).append(name)
    return [groups[key] for key in sorted(groups)]
