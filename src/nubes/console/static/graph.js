// Draws the console API's execution graph (nodes with x/y/w/h and status, edges) as SVG.
const NS = "http://www.w3.org/2000/svg";
export const COLORS = {
  succeeded: ["#d9f2df", "#2e9a4f"], failed: ["#fbdcdc", "#c0392b"], caught: ["#fdeed3", "#d08a1c"],
  running: ["#dcebfb", "#1f6fc5"], "not-reached": ["#f3f5f7", "#a9b4bf"],
};

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const inside = (n, x, y) => x > n.x - 4 && x < n.x + n.w + 4 && y > n.y - 4 && y < n.y + n.h + 4;

function bezier(x1, y1, x2, y2, t) {
  const my = (y1 + y2) / 2, u = 1 - t;
  return [u * u * u * x1 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t * t * t * x2,
    u * u * u * y1 + 3 * u * u * t * my + 3 * u * t * t * my + t * t * t * y2];
}

function edgePath(a, b, obstacles) {
  const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
  if (y2 > y1) {
    const my = (y1 + y2) / 2;
    // a long edge that would cross a state goes around the blocking states instead
    const blocking = obstacles.filter((n) => n !== a && n !== b && [...Array(24).keys()].some((i) => inside(n, ...bezier(x1, y1, x2, y2, (i + 0.5) / 24))));
    if (blocking.length) {
      const right = Math.max(...blocking.map((n) => n.x + n.w)) + 18;
      const left = Math.min(...blocking.map((n) => n.x)) - 18;
      const side = Math.abs(right - x1) <= Math.abs(x1 - left) ? right : left;
      return `M${x1},${y1} C${x1},${y1 + 24} ${side},${y1 + 6} ${side},${y1 + 30} L${side},${y2 - 30} C${side},${y2 - 6} ${x2},${y2 - 24} ${x2},${y2}`;
    }
    return `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`;
  }
  // back edge (a loop): leave from the right side, come back into the right side
  const sx = a.x + a.w, sy = a.y + a.h / 2, tx = b.x + b.w, ty = b.y + b.h / 2;
  const bend = Math.max(sx, tx) + 40;
  return `M${sx},${sy} C${bend},${sy} ${bend},${ty} ${tx},${ty}`;
}

/** An <svg> element for a graph document from /api/execution or /api/graph. */
export function drawGraph(graph, onSelect) {
  const svg = el("svg", { width: graph.width + 60, height: graph.height + 20, viewBox: `-20 -10 ${graph.width + 60} ${graph.height + 20}` });
  svg.classList.add("state-graph");
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7a89" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const leaves = graph.nodes.filter((n) => !n.group);
  // groups first (underneath), then edges, then leaf states on top
  for (const n of graph.nodes.filter((n) => n.group)) {
    const [fill, stroke] = COLORS[n.status] || COLORS["not-reached"];
    const g = el("g", { "data-state": n.name, "data-status": n.status, class: "node group" });
    g.appendChild(el("rect", { x: n.x, y: n.y, width: n.w, height: n.h, rx: 8, fill, "fill-opacity": 0.35, stroke, "stroke-dasharray": "5 3" }));
    g.appendChild(el("text", { x: n.x + 10, y: n.y + 16, "font-weight": 600, fill: "#33414f" }, `${n.name} (${n.type})`));
    g.addEventListener("click", (e) => { e.stopPropagation(); onSelect && onSelect(n); });
    svg.appendChild(g);
  }
  for (const e of graph.edges) {
    const a = byId.get(e.from), b = byId.get(e.to);
    if (!a || !b) continue;
    const catchEdge = e.label === "Catch";
    svg.appendChild(el("path", { d: edgePath(a, b, leaves), fill: "none", stroke: catchEdge ? "#d08a1c" : "#6b7a89", "stroke-width": 1.4,
      "stroke-dasharray": catchEdge ? "4 3" : "", "marker-end": "url(#arrow)", class: "edge" }));
    if (e.label) {
      const lx = (a.x + a.w / 2 + b.x + b.w / 2) / 2 + 6, ly = b.y > a.y + a.h ? (a.y + a.h + b.y) / 2 : (a.y + b.y) / 2 + a.h / 2;
      svg.appendChild(el("text", { x: lx, y: ly, fill: "#6b7a89", "font-size": 11 }, e.label));
    }
  }
  for (const n of graph.nodes.filter((n) => !n.group)) {
    const [fill, stroke] = COLORS[n.status] || COLORS["not-reached"];
    const g = el("g", { "data-state": n.name, "data-status": n.status, class: "node", style: "cursor:pointer" });
    if (n.type === "Start" || n.type === "End") {
      g.appendChild(el("circle", { cx: n.x + n.w / 2, cy: n.y + n.h / 2, r: n.w / 2, fill, stroke, "stroke-width": 2 }));
      g.appendChild(el("text", { x: n.x + n.w / 2, y: n.y + n.h / 2 + 4, "text-anchor": "middle", "font-size": 10 }, n.name));
    } else {
      g.appendChild(el("rect", { x: n.x, y: n.y, width: n.w, height: n.h, rx: 6, fill, stroke, "stroke-width": 2 }));
      const label = n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name;
      g.appendChild(el("text", { x: n.x + n.w / 2, y: n.y + 17, "text-anchor": "middle", "font-weight": 600 }, label));
      const sub = n.type + (n.entered > 1 ? ` ×${n.entered}` : "");
      g.appendChild(el("text", { x: n.x + n.w / 2, y: n.y + 32, "text-anchor": "middle", fill: "#5b6b7b", "font-size": 10 }, sub));
    }
    g.appendChild(el("title", {}, `${n.name}: ${n.status}`));
    g.addEventListener("click", () => onSelect && onSelect(n));
    svg.appendChild(g);
  }
  return svg;
}
