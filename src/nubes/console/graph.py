"""A state machine definition laid out as a graph, coloured by an execution's history.

The console draws what this returns as SVG: every state is a box at ``x, y`` (absolute
coordinates, top-left), Parallel and Map states are groups that contain their branches'
states, and edges name their kind (Next, Default, a Choice rule, Catch). Layout is a
simple layered one: a state's row is its breadth-first depth from ``StartAt``, so a
straight workflow reads top to bottom and back edges (retry loops) point upward.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

NODE_W = 180
NODE_H = 40
GAP_X = 30
GAP_Y = 46
PAD = 18
LABEL_H = 22
TERMINAL = 40

#: failure events that belong to the state being run when they happen
_FAILURES = ("Failed", "TimedOut", "Aborted")


@dataclass
class _Box:
    """A laid-out state (or group) relative to its parent's origin."""

    id: str
    name: str
    type: str
    w: int
    h: int
    x: int = 0
    y: int = 0
    children: list[_Box] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)


def _targets(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(target state, edge label) for each transition out of a state."""
    out: list[tuple[str, str]] = []
    for i, rule in enumerate(state.get("Choices") or []):
        if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
            out.append((rule["Next"], f"rule {i + 1}"))
    if isinstance(state.get("Default"), str):
        out.append((state["Default"], "Default"))
    if isinstance(state.get("Next"), str):
        out.append((state["Next"], ""))
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            out.append((catcher["Next"], "Catch"))
    return out


def _forward_edges(states: dict[str, Any], start: str) -> dict[str, list[str]]:
    """Each state's successors without the edges that close a loop (found by a
    depth-first walk from ``start``: an edge back to a state still on the walk)."""
    forward: dict[str, list[str]] = {name: [] for name in states}
    state_of: dict[str, int] = {}  # 1 on the walk, 2 done
    roots = [start] if start in states else []
    roots += [n for n in states if n != start]
    for root in roots:
        if root in state_of:
            continue
        stack: list[tuple[str, list[str]]] = [
            (root, [t for t, _ in _targets(states[root]) if t in states])
        ]
        state_of[root] = 1
        while stack:
            name, todo = stack[-1]
            if not todo:
                state_of[name] = 2
                stack.pop()
                continue
            target = todo.pop(0)
            if state_of.get(target) == 1:
                continue  # a loop back: drawn, but not used for ranks
            forward[name].append(target)
            if target not in state_of:
                state_of[target] = 1
                stack.append((target, [t for t, _ in _targets(states[target]) if t in states]))
    return forward


def _ranks(states: dict[str, Any], start: str) -> list[list[str]]:
    """States in rows: a state sits one row below its lowest predecessor (longest
    path over the loop-free edges), so every forward transition points down; rows are
    ordered by their predecessors' positions to keep lines from crossing."""
    forward = _forward_edges(states, start)
    preds: dict[str, list[str]] = {name: [] for name in states}
    for name, targets in forward.items():
        for target in targets:
            preds[target].append(name)
    depth: dict[str, int] = {}
    order = list(states)
    pending = {name: len(preds[name]) for name in states}
    ready = deque(n for n in order if pending[n] == 0)
    while ready:
        name = ready.popleft()
        depth[name] = max((depth[p] + 1 for p in preds[name]), default=0)
        for target in forward[name]:
            pending[target] -= 1
            if pending[target] == 0:
                ready.append(target)
    if start in depth:
        depth[start] = 0  # a state pointing at StartAt from outside the flow is unreachable
    reachable = set()
    walk = [start] if start in states else []
    while walk:
        name = walk.pop()
        if name not in reachable:
            reachable.add(name)
            walk.extend(forward[name])
    # states no transition reaches go below the workflow, not beside its start
    shift = max((depth[n] for n in reachable), default=-1) + 1
    for name in states:
        if name not in reachable:
            depth[name] = depth.get(name, 0) + shift
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in order:
        rows[depth.get(name, 0)].append(name)
    position: dict[str, float] = {}
    for row in rows:
        row.sort(
            key=lambda n: (
                sum(position.get(p, 0.0) for p in preds[n]) / max(len(preds[n]), 1),
                order.index(n),
            )
        )
        for i, name in enumerate(row):
            position[name] = float(i)
    return rows


def _sub_machines(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The nested machines of a Parallel (its branches) or a Map (its processor)."""
    if state.get("Type") == "Parallel":
        return [b for b in state.get("Branches") or [] if isinstance(b, dict)]
    if state.get("Type") == "Map":
        inner = state.get("ItemProcessor") or state.get("Iterator")
        return [inner] if isinstance(inner, dict) else []
    return []


def _layout_state(name: str, state: dict[str, Any], prefix: str) -> _Box:
    node_id = prefix + name
    subs = _sub_machines(state)
    if not subs:
        return _Box(node_id, name, str(state.get("Type", "?")), NODE_W, NODE_H)
    branches = [_layout_machine(sub, f"{node_id}/{i}/") for i, sub in enumerate(subs)]
    group = _Box(node_id, name, str(state.get("Type")), 0, 0)
    x = PAD
    for branch in branches:
        branch.x, branch.y = x, LABEL_H + PAD
        x += branch.w + GAP_X
    group.w = max(x - GAP_X + PAD, NODE_W)
    group.h = LABEL_H + PAD + max(b.h for b in branches) + PAD
    group.children = branches
    return group


def _layout_machine(machine: dict[str, Any], prefix: str) -> _Box:
    """Lay out one (sub)machine: rows of states, each row centred."""
    states = {k: v for k, v in (machine.get("States") or {}).items() if isinstance(v, dict)}
    rows = _ranks(states, str(machine.get("StartAt", "")))
    boxes = {name: _layout_state(name, states[name], prefix) for name in states}
    width = max(
        (sum(boxes[n].w for n in row) + GAP_X * (len(row) - 1) for row in rows), default=NODE_W
    )
    y = 0
    for row in rows:
        row_w = sum(boxes[n].w for n in row) + GAP_X * (len(row) - 1)
        x = (width - row_w) // 2
        row_h = max(boxes[n].h for n in row)
        for n in row:
            boxes[n].x, boxes[n].y = x, y
            x += boxes[n].w + GAP_X
        y += row_h + GAP_Y
    machine_box = _Box(prefix.rstrip("/") or "machine", "", "Branch", width, max(y - GAP_Y, NODE_H))
    machine_box.children = [boxes[n] for n in states]
    for name, state in states.items():
        for target, label in _targets(state):
            if target in states:
                machine_box.edges.append(
                    {"from": prefix + name, "to": prefix + target, "label": label}
                )
    return machine_box


def _flatten(box: _Box, ox: int, oy: int, parent: str | None, nodes: list[dict[str, Any]],
             edges: list[dict[str, str]]) -> None:  # fmt: skip
    """Absolute coordinates for every node; branches are invisible containers."""
    ax, ay = ox + box.x, oy + box.y
    if box.type != "Branch":
        nodes.append({"id": box.id, "name": box.name, "type": box.type, "x": ax, "y": ay, "w": box.w, "h": box.h,
                      "parent": parent, "group": bool(box.children)})  # fmt: skip
        parent = box.id
    edges.extend(box.edges)
    for child in box.children:
        _flatten(child, ax, ay, parent, nodes, edges)


def layout(definition: dict[str, Any]) -> dict[str, Any]:
    """Nodes (with ``x, y, w, h``), edges and the canvas size for a definition.

    A ``Start`` node points at ``StartAt`` and every terminal state (``End``,
    ``Succeed``, ``Fail``) points at an ``End`` node.
    """
    top = _layout_machine(definition, "")
    top.x, top.y = TERMINAL + GAP_X, TERMINAL + GAP_Y
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    _flatten(top, 0, 0, None, nodes, edges)
    width = top.w + 2 * (TERMINAL + GAP_X)
    centre = width // 2
    end_y = top.y + top.h + GAP_Y
    nodes.append({"id": "$start", "name": "Start", "type": "Start", "x": centre - TERMINAL // 2, "y": 0,
                  "w": TERMINAL, "h": TERMINAL, "parent": None, "group": False})  # fmt: skip
    nodes.append({"id": "$end", "name": "End", "type": "End", "x": centre - TERMINAL // 2, "y": end_y,
                  "w": TERMINAL, "h": TERMINAL, "parent": None, "group": False})  # fmt: skip
    states = definition.get("States") or {}
    if definition.get("StartAt") in states:
        edges.append({"from": "$start", "to": str(definition["StartAt"]), "label": ""})
    for name, state in states.items():
        if isinstance(state, dict) and (
            state.get("End") is True or state.get("Type") in ("Succeed", "Fail")
        ):
            edges.append({"from": name, "to": "$end", "label": ""})
    return {"nodes": nodes, "edges": edges, "width": width, "height": end_y + TERMINAL}


def _owner(event: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> str | None:
    """The state a failure happened in: follow ``previousEventId`` back to the
    nearest ``...StateEntered`` (right even while Parallel branches interleave)."""
    seen = 0
    current: dict[str, Any] | None = event
    while current is not None and seen < 10_000:
        if str(current.get("type", "")).endswith("StateEntered"):
            return str((current.get("stateEnteredEventDetails") or {}).get("name", ""))
        current = by_id.get(current.get("previousEventId", -1))
        seen += 1
    return None


def state_statuses(
    events: list[dict[str, Any]], execution_status: str
) -> dict[str, dict[str, Any]]:
    """Per state name: ``status`` (succeeded, failed, caught, running) and counts.

    A state that was entered and never exited is running while the execution runs
    and failed once it has ended; a failure event is charged to the state entered
    (found through ``previousEventId``), and a state that failed but then exited had
    its error caught.
    """
    info: dict[str, dict[str, Any]] = {}
    open_states: list[str] = []
    by_id = {e["id"]: e for e in events if isinstance(e.get("id"), int)}
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            name = str((event.get("stateEnteredEventDetails") or {}).get("name", ""))
            row = info.setdefault(name, {"entered": 0, "exited": 0, "failed": 0})
            row["entered"] += 1
            open_states.append(name)
        elif kind.endswith("StateExited"):
            name = str((event.get("stateExitedEventDetails") or {}).get("name", ""))
            row = info.setdefault(name, {"entered": 0, "exited": 0, "failed": 0})
            row["exited"] += 1
            if name in open_states:
                open_states.reverse()
                open_states.remove(name)
                open_states.reverse()
        elif kind.endswith(_FAILURES) and not kind.startswith("Execution"):
            owner = _owner(event, by_id) or (open_states[-1] if open_states else None)
            if owner in info:
                info[owner]["failed"] += 1
    ended = execution_status not in ("RUNNING", "PENDING_REDRIVE")
    for row in info.values():
        if row["entered"] > row["exited"]:
            row["status"] = "failed" if ended else "running"
        elif row["failed"]:
            row["status"] = "caught"
        else:
            row["status"] = "succeeded"
    return info


def execution_graph(
    definition: dict[str, Any], events: list[dict[str, Any]], execution_status: str
) -> dict[str, Any]:
    """The laid-out definition with each node's status from the history
    (``not-reached`` for states the execution never entered)."""
    graph = layout(definition)
    statuses = state_statuses(events, execution_status)
    ok = execution_status == "SUCCEEDED"
    for node in graph["nodes"]:
        if node["id"] == "$start":
            node["status"] = "succeeded" if events else "not-reached"
        elif node["id"] == "$end":
            node["status"] = (
                ("succeeded" if ok else "failed")
                if execution_status not in ("RUNNING",)
                else "not-reached"
            )
        else:
            row = statuses.get(node["name"])
            node["status"] = row["status"] if row else "not-reached"
            if row:
                node["entered"] = row["entered"]
        if node["type"] == "Fail" and node["status"] == "succeeded":
            node["status"] = "failed"
    graph["execution_status"] = execution_status
    return graph
