// The service graph page: polls /graph/data every 2 s and draws the mesh's
// traffic as a layered, left-to-right SVG graph. Plain JS, no dependencies.
//
// DOM contract (tests read it): every node is
//   <g class="node" data-node-id data-kind>
// every edge is
//   <g class="edge [error] [mtls]" data-edge-id data-source data-target
//      data-protocol data-request-rate data-error-rate
//      data-configured-weight data-observed-share>
// (attributes empty when the value is null); an mTLS edge holds a
// <g class="lock">, and #status says where the numbers came from.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 2000;
  const COL_W = 290; // horizontal distance between layers
  const ROW_H = 96; // vertical distance between nodes of a layer
  const MARGIN = { left: 90, top: 50, right: 170, bottom: 60 };
  const R = 17; // node radius
  const LANE_H = 44; // vertical distance between back edges under the drawing

  const nsSelect = document.getElementById("namespace");
  const windowSelect = document.getElementById("window");
  const graphBox = document.getElementById("graph");
  const statusLine = document.getElementById("status");

  let lastGood = null; // the last document drawn, with its arrival time
  let timer = null;
  let inFlight = null;

  // ---- query state (kept in the address bar, so a link reopens the view)

  function readQuery() {
    const q = new URLSearchParams(window.location.search);
    const ns = q.get("namespace");
    const win = q.get("window");
    if (ns) {
      ensureOption(nsSelect, ns);
      nsSelect.value = ns;
    }
    if (win) {
      ensureOption(windowSelect, win, formatWindow(Number(win)));
      windowSelect.value = win;
    }
  }

  function writeQuery() {
    const q = new URLSearchParams();
    if (nsSelect.value) q.set("namespace", nsSelect.value);
    q.set("window", windowSelect.value);
    window.history.replaceState(null, "", "?" + q.toString());
  }

  function ensureOption(select, value, text) {
    for (const o of select.options) if (o.value === value) return;
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text || value;
    select.appendChild(o);
  }

  function fillNamespaces(namespaces) {
    const chosen = nsSelect.value;
    const wanted = [""].concat(namespaces || []);
    if (chosen && !wanted.includes(chosen)) wanted.push(chosen);
    const have = Array.from(nsSelect.options).map((o) => o.value);
    if (have.join("\n") === wanted.join("\n")) return;
    nsSelect.textContent = "";
    for (const ns of wanted) {
      const o = document.createElement("option");
      o.value = ns;
      o.textContent = ns === "" ? "all" : ns;
      nsSelect.appendChild(o);
    }
    nsSelect.value = chosen;
  }

  // ---- polling

  function schedule(delay) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  async function poll() {
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    const q = new URLSearchParams({
      namespace: nsSelect.value,
      window: windowSelect.value,
    });
    const abortTimer = setTimeout(() => controller.abort(), 10000);
    try {
      const response = await fetch("/graph/data?" + q.toString(), {
        signal: controller.signal,
        cache: "no-store",
      });
      const text = await response.text();
      let doc;
      try {
        doc = JSON.parse(text);
      } catch (_) {
        throw new Error("HTTP " + response.status + ": " + text.slice(0, 200));
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status + ": " + (doc.error || text));
      }
      lastGood = { doc: doc, at: new Date() };
      fillNamespaces(doc.namespaces);
      draw(doc);
      showStatus(doc, null);
    } catch (e) {
      if (controller.signal.aborted && inFlight !== controller) return;
      showStatus(lastGood && lastGood.doc, e);
    } finally {
      clearTimeout(abortTimer);
      if (inFlight === controller) {
        inFlight = null;
        schedule(POLL_MS);
      }
    }
  }

  // ---- status line

  function showStatus(doc, failure) {
    statusLine.textContent = "";
    const parts = [];
    if (doc) {
      parts.push(["source", doc.source]);
      parts.push(["window", formatWindow(doc.window_seconds)]);
      parts.push(["nodes", String((doc.nodes || []).length)]);
      parts.push(["edges", String((doc.edges || []).length)]);
      parts.push(["updated", lastGood.at.toLocaleTimeString()]);
    }
    for (const [key, value] of parts) {
      const span = document.createElement("span");
      span.className = "field";
      const k = document.createElement("b");
      k.textContent = key + " ";
      span.appendChild(k);
      span.appendChild(document.createTextNode(value));
      statusLine.appendChild(span);
    }
    const problems = [];
    if (failure) problems.push("update failed: " + failure.message + (doc ? " (showing older data)" : ""));
    for (const e of (doc && !failure && doc.errors) || []) problems.push(e);
    if (problems.length) {
      const ul = document.createElement("ul");
      ul.className = "errors";
      for (const p of problems) {
        const li = document.createElement("li");
        li.textContent = p;
        ul.appendChild(li);
      }
      statusLine.appendChild(ul);
    }
    statusLine.classList.toggle("stale", !!failure);
  }

  // ---- formatting

  function formatWindow(s) {
    if (!s) return "?";
    return s % 60 === 0 ? s / 60 + " m" : s + " s";
  }

  function num(v, digits) {
    if (v === 0) return "0";
    if (v < 0.1) return v.toPrecision(2);
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(Math.min(digits, 1));
    return v.toFixed(digits);
  }

  function formatBytes(rate) {
    const units = ["B/s", "KB/s", "MB/s", "GB/s"];
    let i = 0;
    while (rate >= 1000 && i < units.length - 1) {
      rate /= 1000;
      i++;
    }
    return num(rate, 1) + " " + units[i];
  }

  function formatMs(ms) {
    const trim = (t) => t.replace(/\.0+$/, "");
    return ms >= 1000 ? trim(num(ms / 1000, 2)) + " s" : trim(num(ms, ms < 10 ? 1 : 0)) + " ms";
  }

  // The edge's label lines: rate and errors, latency, and for canary
  // edges the configured weight against the share seen. Short lines keep
  // labels within the gap between two columns.
  function edgeText(e) {
    const lines = [];
    const traffic = [];
    const latency = [];
    if (e.request_rate != null) {
      traffic.push(num(e.request_rate, 1) + " rps");
      if (e.error_rate > 0) traffic.push(num(e.error_rate * 100, 1) + "% err");
      if (e.p50_ms != null) latency.push("p50 " + formatMs(e.p50_ms));
      if (e.p99_ms != null) latency.push("p99 " + formatMs(e.p99_ms));
    } else if (e.bytes_rate != null) {
      traffic.push(formatBytes(e.bytes_rate));
    }
    if (traffic.length) lines.push(traffic.join(" · "));
    if (latency.length) lines.push(latency.join(" · "));
    const split = [];
    if (e.configured_weight != null) split.push("weight " + e.configured_weight + "%");
    if (e.observed_share != null) split.push("seen " + (e.observed_share * 100).toFixed(0) + "%");
    if (split.length) lines.push(split.join(" · "));
    return lines;
  }

  function attr(v) {
    return v == null ? "" : String(v);
  }

  // ---- layout: layers by longest path over the graph with cycles broken

  const KIND_ORDER = { unknown: 0, external: 1, gateway: 2, workload: 3, waypoint: 4, service: 5 };

  function layout(nodes, edges) {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const out = new Map(nodes.map((n) => [n.id, []]));
    const indeg = new Map(nodes.map((n) => [n.id, 0]));
    for (const e of edges) {
      if (!byId.has(e.source) || !byId.has(e.target) || e.source === e.target) continue;
      out.get(e.source).push(e.target);
      indeg.set(e.target, indeg.get(e.target) + 1);
    }
    const order = nodes.slice().sort((a, b) => {
      const ia = indeg.get(a.id) === 0 ? 0 : 1;
      const ib = indeg.get(b.id) === 0 ? 0 : 1;
      return ia - ib || (KIND_ORDER[a.kind] ?? 9) - (KIND_ORDER[b.kind] ?? 9) || a.id.localeCompare(b.id);
    });
    // Depth-first from the roots; an edge into a node still on the stack
    // closes a cycle and is left out of the ranking (drawn as a back edge).
    const state = new Map();
    const back = new Set();
    const topo = [];
    for (const root of order) {
      if (state.has(root.id)) continue;
      const stack = [[root.id, 0]];
      state.set(root.id, 1);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const next = out.get(top[0]);
        if (top[1] < next.length) {
          const t = next[top[1]++];
          if (!state.has(t)) {
            state.set(t, 1);
            stack.push([t, 0]);
          } else if (state.get(t) === 1) {
            back.add(top[0] + "\u0000" + t);
          }
        } else {
          state.set(top[0], 2);
          topo.push(top[0]);
          stack.pop();
        }
      }
    }
    topo.reverse();
    const layer = new Map(nodes.map((n) => [n.id, 0]));
    for (const id of topo) {
      for (const t of out.get(id)) {
        if (back.has(id + "\u0000" + t)) continue;
        layer.set(t, Math.max(layer.get(t), layer.get(id) + 1));
      }
    }
    // Pull sources towards their first target, so a lone client sits next
    // to what it calls instead of in the first column.
    for (const id of topo.slice().reverse()) {
      const targets = out.get(id).filter((t) => !back.has(id + "\u0000" + t));
      if (indeg.get(id) === 0 && targets.length) {
        const nearest = Math.min(...targets.map((t) => layer.get(t)));
        layer.set(id, Math.max(layer.get(id), nearest - 1));
      }
    }
    const columns = [];
    for (const n of order) {
      const l = layer.get(n.id);
      (columns[l] = columns[l] || []).push(n.id);
    }
    for (let i = 0; i < columns.length; i++) columns[i] = columns[i] || [];
    // Order each column by the mean row of its neighbours (a few sweeps).
    const preds = new Map(nodes.map((n) => [n.id, []]));
    for (const [s, ts] of out) for (const t of ts) preds.get(t).push(s);
    const row = new Map();
    const setRows = () => columns.forEach((c) => c.forEach((id, i) => row.set(id, i - (c.length - 1) / 2)));
    setRows();
    const sweep = (neighbours, from, to, step) => {
      for (let l = from; l !== to; l += step) {
        const mean = (id) => {
          const ns = neighbours.get(id).filter((m) => row.has(m));
          return ns.length ? ns.reduce((a, m) => a + row.get(m), 0) / ns.length : row.get(id);
        };
        const keyed = columns[l].map((id) => [mean(id), row.get(id), id]);
        keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        columns[l] = keyed.map((k) => k[2]);
        setRows();
      }
    };
    for (let i = 0; i < 4; i++) {
      sweep(preds, 1, columns.length, 1);
      sweep(out, columns.length - 2, -1, -1);
    }
    const tallest = Math.max(1, ...columns.map((c) => c.length));
    const pos = new Map();
    columns.forEach((c, l) => {
      const offset = ((tallest - c.length) * ROW_H) / 2;
      c.forEach((id, i) => pos.set(id, { x: MARGIN.left + l * COL_W, y: MARGIN.top + offset + i * ROW_H, layer: l }));
    });
    return {
      pos: pos,
      width: MARGIN.left + Math.max(0, columns.length - 1) * COL_W + MARGIN.right,
      height: MARGIN.top + (tallest - 1) * ROW_H + MARGIN.bottom + 20,
    };
  }

  // ---- drawing

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, cls) {
    const t = el("text", { x: x, y: y, class: cls || "" }, parent);
    t.textContent = content;
    return t;
  }

  function shape(g, kind) {
    const r = R;
    switch (kind) {
      case "service":
        return el("polygon", { points: `0,${-r} ${r * 0.95},${r * 0.7} ${-r * 0.95},${r * 0.7}`, class: "shape service" }, g);
      case "waypoint": {
        const p = [];
        for (let i = 0; i < 6; i++) {
          const a = (Math.PI / 3) * i;
          p.push(`${(r * Math.cos(a)).toFixed(1)},${(r * Math.sin(a)).toFixed(1)}`);
        }
        return el("polygon", { points: p.join(" "), class: "shape waypoint" }, g);
      }
      case "gateway":
        return el("polygon", { points: `0,${-r - 2} ${r + 2},0 0,${r + 2} ${-r - 2},0`, class: "shape gateway" }, g);
      case "external":
        return el("path", {
          d: `M${-r},${r * 0.5} a${r * 0.5},${r * 0.5} 0 0 1 ${r * 0.3},${-r}` +
            ` a${r * 0.6},${r * 0.6} 0 0 1 ${r * 1.1},${-r * 0.2}` +
            ` a${r * 0.55},${r * 0.55} 0 0 1 ${r * 0.6},${r * 1.2} z`,
          class: "shape external",
        }, g);
      case "unknown":
        return el("rect", { x: -r, y: -r * 0.8, width: 2 * r, height: 1.6 * r, rx: 5, class: "shape unknown" }, g);
      default:
        return el("circle", { r: r, class: "shape workload" }, g);
    }
  }

  // A padlock, centred on (0, 0).
  function lock(parent, x, y) {
    const g = el("g", { class: "lock", transform: `translate(${x},${y})` }, parent);
    el("title", {}, g).textContent = "mutual TLS";
    el("path", { d: "M-3,-1 v-3 a3,3 0 0 1 6,0 v3", class: "shackle" }, g);
    el("rect", { x: -4.5, y: -1.5, width: 9, height: 7, rx: 1.5, class: "body" }, g);
    return g;
  }

  function nodeLabel(n, showNamespace) {
    if (n.kind === "unknown") return ["unknown", "outside the mesh"];
    const second = [];
    if (showNamespace) second.push(n.namespace);
    second.push(n.kind === "workload" && n.version ? n.version : n.kind);
    return [n.name, second.join(" · ")];
  }

  // The point at `t` on a cubic Bézier curve.
  function bezier(p0, p1, p2, p3, t) {
    const u = 1 - t;
    const f = (k) => u * u * u * p0[k] + 3 * u * u * t * p1[k] + 3 * u * t * t * p2[k] + t * t * t * p3[k];
    return { x: f(0), y: f(1) };
  }

  // `t`: where along a forward edge its label sits; labels move away from
  // the busier end, where many edges meet and would stack their labels.
  function edgeGeometry(a, b, t, floor, lane) {
    if (b.layer > a.layer) {
      const x1 = a.x + R + 2, y1 = a.y, x2 = b.x - R - 4, y2 = b.y;
      const dx = (x2 - x1) / 2;
      return {
        d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`,
        mid: bezier([x1, y1], [x1 + dx, y1], [x2 - dx, y2], [x2, y2], t),
      };
    }
    // Back or same-layer edge (a reply hop into a shared waypoint, say):
    // it leaves to the right, runs under the whole drawing at `floor`,
    // climbs between the columns and enters the target from the left, so
    // it crosses no node.
    const x1 = a.x + R + 2, y1 = a.y, x2 = b.x - R - 4, y2 = b.y;
    const xr = a.x + R + 22 + lane * 8;
    const xl = b.x - R - 40 - lane * 8;
    const k = 14;
    return {
      d: `M${x1},${y1} Q${xr},${y1} ${xr},${y1 + k} L${xr},${floor - k} Q${xr},${floor} ${xr - k},${floor} ` +
        `L${xl + k},${floor} Q${xl},${floor} ${xl},${floor - k} L${xl},${y2 + k} Q${xl},${y2} ${xl + k},${y2} L${x2},${y2}`,
      mid: { x: (xr + xl) / 2, y: floor - 5 },
      above: true,
    };
  }

  function draw(doc) {
    const nodes = doc.nodes || [];
    const edges = (doc.edges || []).filter((e) => e.source !== e.target);
    graphBox.textContent = "";
    if (!nodes.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No traffic in this window yet. Send some requests through the mesh; the graph updates every 2 s.";
      graphBox.appendChild(p);
      return;
    }
    const { pos, width } = layout(nodes, edges);
    const bottom = Math.max(...Array.from(pos.values()).map((p) => p.y)) + R + 30;
    const backCount = edges.filter((e) => pos.has(e.source) && pos.has(e.target) && pos.get(e.target).layer <= pos.get(e.source).layer).length;
    const height = bottom + 30 + backCount * LANE_H;
    let backIndex = 0;
    const namespaces = new Set(nodes.map((n) => n.namespace));
    const svg = el("svg", { width: width, height: height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    el("title", {}, svg).textContent = "service graph";
    const defs = el("defs", {}, svg);
    for (const [id, cls] of [["arrow", "head"], ["arrow-error", "head error"]]) {
      const m = el("marker", {
        id: id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 10, markerHeight: 10,
        markerUnits: "userSpaceOnUse", orient: "auto-start-reverse",
      }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", class: cls }, m);
    }
    const edgeLayer = el("g", { class: "edges" }, svg);
    const nodeLayer = el("g", { class: "nodes" }, svg);
    const degree = { in: new Map(), out: new Map() };
    for (const e of edges) {
      degree.out.set(e.source, (degree.out.get(e.source) || 0) + 1);
      degree.in.set(e.target, (degree.in.get(e.target) || 0) + 1);
    }
    const maxRate = Math.max(1, ...edges.map((e) => e.request_rate || 0));

    for (const e of edges) {
      const a = pos.get(e.source), b = pos.get(e.target);
      if (!a || !b) continue;
      const failing = e.error_rate != null && e.error_rate > 0;
      const cls = ["edge", e.protocol || "http"];
      if (failing) cls.push("error");
      if (e.mtls) cls.push("mtls");
      const g = el("g", {
        class: cls.join(" "),
        "data-edge-id": e.id,
        "data-source": e.source,
        "data-target": e.target,
        "data-protocol": attr(e.protocol),
        "data-request-rate": attr(e.request_rate),
        "data-error-rate": attr(e.error_rate),
        "data-configured-weight": attr(e.configured_weight),
        "data-observed-share": attr(e.observed_share),
      }, edgeLayer);
      const lines = edgeText(e);
      el("title", {}, g).textContent =
        `${e.source} → ${e.target} (${e.protocol}${e.mtls ? ", mTLS" : ""})` + (lines.length ? "\n" + lines.join("\n") : "");
      const fanIn = degree.in.get(e.target) || 0, fanOut = degree.out.get(e.source) || 0;
      const backward = b.layer <= a.layer;
      const lane = backward ? backIndex++ : 0;
      const floor = bottom + 40 + lane * LANE_H;
      const geo = edgeGeometry(a, b, fanIn > fanOut ? 0.3 : fanOut > fanIn ? 0.68 : 0.5, floor, lane);
      const widthPx = e.request_rate != null ? 1.4 + 3.2 * Math.sqrt(e.request_rate / maxRate) : 1.6;
      el("path", { d: geo.d, class: "hit" }, g);
      el("path", { d: geo.d, class: "line", "stroke-width": widthPx.toFixed(2), "marker-end": failing ? "url(#arrow-error)" : "url(#arrow)" }, g);
      const lg = el("g", { class: "edge-label" }, g);
      // Centred on a forward edge; wholly above a back edge's floor line.
      const lx = geo.mid.x;
      const ly = geo.above ? geo.mid.y - (lines.length - 1) * 13 : geo.mid.y - 4 - (lines.length - 1) * 6.5;
      if (e.mtls) lock(lg, lx, ly - 14);
      lines.forEach((line, i) =>
        text(lg, lx, ly + i * 13, line, i === 0 ? "traffic" : line.startsWith("p50") || line.startsWith("p99") ? "latency" : "split"));
    }

    for (const n of nodes) {
      const p = pos.get(n.id);
      const g = el("g", {
        class: "node " + n.kind,
        "data-node-id": n.id,
        "data-kind": n.kind,
        transform: `translate(${p.x},${p.y})`,
      }, nodeLayer);
      el("title", {}, g).textContent =
        `${n.kind} ${n.namespace}/${n.name}` + (n.app ? `\napp ${n.app}` : "") + (n.version ? `\nversion ${n.version}` : "");
      shape(g, n.kind);
      const [first, second] = nodeLabel(n, namespaces.size > 1);
      text(g, 0, R + 15, first, "name");
      text(g, 0, R + 28, second, "sub");
      if (n.kind === "waypoint" || n.kind === "gateway") text(g, 0, 4, n.kind === "waypoint" ? "W" : "G", "glyph");
    }
    graphBox.appendChild(svg);
  }

  // ---- start

  readQuery();
  nsSelect.addEventListener("change", () => {
    writeQuery();
    schedule(0);
  });
  windowSelect.addEventListener("change", () => {
    writeQuery();
    schedule(0);
  });
  schedule(0);
})();
