"""Startup order: dependencies first; services of one order form a group deployed in parallel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(depends_on: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, a]``, or ``None``. Unknown names are ignored.

    Iterative depth-first search, so a long chain of dependencies cannot exhaust the stack.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in depends_on:
        if root in state:
            continue
        path: list[str] = [root]
        iters = [iter(depends_on.get(root, ()))]
        state[root] = 1
        while iters:
            dep = next(iters[-1], None)
            if dep is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            # Unknown names and self-dependencies are reported by validation on their own.
            if dep not in depends_on or state.get(dep) == 2 or dep == path[-1]:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            state[dep] = 1
            path.append(dep)
            iters.append(iter(depends_on.get(dep, ())))
    return None


def startup_orders(depends_on: Mapping[str, Sequence[str]], manual: Mapping[str, int | None]) -> dict[str, int]:
    """Each service's order: the manual value, else ``max(order of dependencies) + 1``, else 1.

    ``depends_on`` must be acyclic and name known services (validated before). Iterative, in
    dependency order, so long chains are fine.
    """
    orders: dict[str, int] = {}
    for root in depends_on:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in orders:
                stack.pop()
                continue
            fixed = manual.get(name)
            if fixed is not None:
                orders[name] = fixed
                stack.pop()
                continue
            # Self-dependencies are an error reported by validation; skip them so ordering ends.
            pending = [d for d in depends_on.get(name, ()) if d in depends_on and d not in orders and d != name and d not in stack]
            if pending:
                stack.extend(pending)
                continue
            orders[name] = max((orders[d] for d in depends_on.get(name, ()) if d in orders and d != name), default=0) + 1
            stack.pop()
    return orders


def startup_groups(orders: Mapping[str, int]) -> list[list[str]]:
    """Services grouped by order, lowest first; within a group, in the given (file) order."""
    groups: dict[int, list[str]] = {}
    for name, order in orders.items():
        groups.setdefault(order, []).append(name)
    return [groups[key] for key in sorted(groups)]
