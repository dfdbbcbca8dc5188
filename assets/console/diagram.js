// The workflow's state diagram: a layered layout (pure, tested with `node --test`) and its SVG.
//
// The layout is the usual one for directed graphs: states in layers from the initial one down
// (terminal states last); an edge that skips layers gets a lane (a point of its own) in every
// layer it crosses, so it runs through a gap between boxes there and never through one; the
// states and lanes of each layer are ordered by the barycentre of their neighbours to cut
// crossings, then moved towards their neighbours as far as the gaps allow. Edges leave the
// bottom of a box and enter the top of the next, each at a port of its own so arrowheads do not
// pile up; an edge going back up leaves the top and enters the bottom; an edge within a layer runs
// between the facing sides of neighbours (or over the layer); a self edge is a small loop on the
// box's top right corner.

import { glyph, pathOf } from './format.js';

export const NODE_W = 148;
export const NODE_H = 38;
const GAP_BOX = 32; // between two boxes of a layer
const GAP_LANE = 18; // between a box and a lane, or two lanes
const GAP_Y = 58;
const MARGIN = 22;
const PORT_PAD = 14; // no port closer than this to a box's corner
const LOOP_ROOM = 22; // a self loop's reach beyond its box's corner
const OVER = 16; // how far above its layer an edge within a layer that cannot go straight runs

/** Places each state in a layer: see the module's comment. */
function layers(workflow) {
  const names = workflow.states.map((s) => s.name);
  const terminal = new Set(workflow.states.filter((s) => s.terminal).map((s) => s.name));
  const out = new Map(names.map((n) => [n, []]));
  for (const e of workflow.edges) out.get(e.from)?.push(e.to);
  // Breadth first from the initial state, over unfinished states only.
  const depth = new Map([[workflow.initial, 0]]);
  const queue = [workflow.initial];
  while (queue.length) {
    const n = queue.shift();
    for (const m of out.get(n) ?? []) {
      if (!depth.has(m) && !terminal.has(m)) {
        depth.set(m, depth.get(n) + 1);
        queue.push(m);
      }
    }
  }
  let last = Math.max(0, ...depth.values());
  // Unfinished states not reached from the initial one get a layer of their own.
  const unreached = names.filter((n) => !depth.has(n) && !terminal.has(n));
  if (unreached.length) {
    last += 1;
    for (const n of unreached) depth.set(n, last);
  }
  if (terminal.size) {
    last += 1;
    for (const n of terminal) depth.set(n, last);
  }
  return { depth, last, terminal };
}

/** Pairs of segments between two adjacent layers that cross, for the order `pos`. */
function crossings(segments, pos) {
  let n = 0;
  for (let i = 0; i < segments.length; i += 1) {
    for (let j = i + 1; j < segments.length; j += 1) {
      const [a1, b1] = segments[i];
      const [a2, b2] = segments[j];
      if (a1 === a2 || b1 === b2) continue;
      if ((pos.get(a1) - pos.get(a2)) * (pos.get(b1) - pos.get(b2)) < 0) n += 1;
    }
  }
  return n;
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

function push(map, key, value) {
  if (!map.has(key)) map.set(key, []);
  map.get(key).push(value);
}

/** An SVG path through `points`: across a gap between layers a curve that leaves and arrives
 * vertically, down a lane a straight line (the points alternate: gap, lane, gap, ...). */
function chainPath(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i += 1) {
    const [x1, y1] = points[i - 1];
    const [x2, y2] = points[i];
    if (i % 2 === 1 && x1 !== x2) {
      const my = (y1 + y2) / 2;
      d += ` C${x1},${my} ${x2},${my} ${x2},${y2}`;
    } else {
      d += ` L${x2},${y2}`;
    }
  }
  return d;
}

/**
 * Lays out `workflow` ({initial, states: [{name, terminal}], edges: [{from, to}]}) and the
 * transitions `extra` ([{from, to}]: ones a run took that the workflow does not declare, such as
 * an operator's retry). Returns the nodes with their boxes, the edges (declared, then extra) each
 * with its SVG path `d`, its `start` and `end` points, `loop` for a self edge, `back` when it does
 * not go down, and the drawing's size.
 */
export function layout(workflow, extra = []) {
  const { depth, last, terminal } = layers(workflow);
  const names = workflow.states.map((s) => s.name);
  const edges = [
    ...workflow.edges.map((e) => ({ from: e.from, to: e.to, extra: false })),
    ...extra.map((e) => ({ from: e.from, to: e.to, extra: true })),
  ].filter((e) => depth.has(e.from) && depth.has(e.to))
    .map((e) => ({ ...e, loop: e.from === e.to, back: depth.get(e.to) <= depth.get(e.from) }));

  // Each layer's items: its states, and a lane for every edge that crosses it.
  let rows = Array.from({ length: last + 1 }, () => []);
  for (const n of names) rows[depth.get(n)].push(n);
  const lane = new Set();
  edges.forEach((e, k) => {
    if (e.loop || depth.get(e.from) === depth.get(e.to)) return;
    e.up = depth.get(e.to) < depth.get(e.from);
    const [top, bottom] = e.up ? [e.to, e.from] : [e.from, e.to];
    e.chain = [top];
    for (let l = depth.get(top) + 1; l < depth.get(bottom); l += 1) {
      const id = `~${k}:${l}`;
      lane.add(id);
      rows[l].push(id);
      e.chain.push(id);
    }
    e.chain.push(bottom);
  });
  const layerOf = (id) => (lane.has(id) ? Number(id.split(':')[1]) : depth.get(id));
  const segs = Array.from({ length: last }, () => []);
  const ups = new Map();
  const downs = new Map();
  for (const e of edges) {
    for (let i = 0; e.chain && i + 1 < e.chain.length; i += 1) {
      segs[layerOf(e.chain[i])].push([e.chain[i], e.chain[i + 1]]);
      push(downs, e.chain[i], e.chain[i + 1]);
      push(ups, e.chain[i + 1], e.chain[i]);
    }
  }

  // Order within layers: barycentre sweeps down and up, keeping the order with fewest crossings.
  const pos = new Map();
  const index = () => rows.forEach((r) => r.forEach((id, i) => pos.set(id, i)));
  index();
  const total = () => segs.reduce((n, s) => n + crossings(s, pos), 0);
  let best = rows.map((r) => [...r]);
  let fewest = total();
  for (let sweep = 0; sweep < 8 && fewest > 0; sweep += 1) {
    const down = sweep % 2 === 0;
    const nb = down ? ups : downs;
    const order = down ? [...rows.keys()].slice(1) : [...rows.keys()].reverse().slice(1);
    for (const l of order) {
      const bary = new Map(rows[l].map((id) => {
        const ns = nb.get(id) ?? [];
        return [id, ns.length ? mean(ns.map((n) => pos.get(n))) : pos.get(id)];
      }));
      rows[l].sort((a, b) => bary.get(a) - bary.get(b) || pos.get(a) - pos.get(b));
      rows[l].forEach((id, i) => pos.set(id, i));
    }
    const n = total();
    if (n < fewest) {
      fewest = n;
      best = rows.map((r) => [...r]);
    }
  }
  rows = best;
  index();
  // Then neighbours swapped wherever that alone removes crossings.
  for (let better = fewest > 0; better;) {
    better = false;
    for (const r of rows) {
      for (let i = 0; i + 1 < r.length; i += 1) {
        [r[i], r[i + 1]] = [r[i + 1], r[i]];
        index();
        const n = total();
        if (n < fewest) {
          fewest = n;
          better = true;
        } else {
          [r[i], r[i + 1]] = [r[i + 1], r[i]];
          index();
        }
      }
    }
  }

  // Across: each item moved towards its neighbours as far as the gaps allow.
  const wide = (id) => (lane.has(id) ? 0 : NODE_W);
  const sep = (a, b) => wide(a) / 2 + wide(b) / 2 + (lane.has(a) || lane.has(b) ? GAP_LANE : GAP_BOX);
  const cx = new Map();
  for (const r of rows) {
    let x = 0;
    r.forEach((id, i) => {
      if (i) x += sep(r[i - 1], id);
      cx.set(id, x);
    });
    for (const id of r) cx.set(id, cx.get(id) - x / 2);
  }
  const place = (r, want) => {
    const left = [];
    const right = [];
    r.forEach((id, i) => { left[i] = i ? Math.max(want[i], left[i - 1] + sep(r[i - 1], id)) : want[i]; });
    for (let i = r.length - 1; i >= 0; i -= 1) {
      right[i] = i < r.length - 1 ? Math.min(want[i], right[i + 1] - sep(r[i], r[i + 1])) : want[i];
    }
    r.forEach((id, i) => cx.set(id, (left[i] + right[i]) / 2));
  };
  for (let sweep = 0; sweep < 12; sweep += 1) {
    const down = sweep % 2 === 0;
    const order = down ? [...rows.keys()].slice(1) : [...rows.keys()].reverse().slice(1);
    for (const l of order) {
      place(rows[l], rows[l].map((id) => {
        const ns = lane.has(id) ? [...ups.get(id), ...downs.get(id)] : ((down ? ups : downs).get(id) ?? []);
        return ns.length ? mean(ns.map((n) => cx.get(n))) : cx.get(id);
      }));
    }
  }

  const looped = new Set(edges.filter((e) => e.loop).map((e) => e.from));
  const left = Math.min(...[...cx].map(([id, x]) => x - wide(id) / 2));
  const shift = MARGIN - left;
  for (const [id, x] of cx) cx.set(id, x + shift);
  const top = (l) => MARGIN + l * (NODE_H + GAP_Y);
  const nodes = new Map(names.map((name) => [name, {
    name,
    layer: depth.get(name),
    x: cx.get(name) - NODE_W / 2,
    y: top(depth.get(name)),
    terminal: terminal.has(name),
  }]));

  // Edges within a layer: straight between neighbours' facing sides, else over the layer.
  const between = (a, b) => {
    const r = rows[depth.get(a)];
    const [i, j] = [r.indexOf(a), r.indexOf(b)].sort((p, q) => p - q);
    return r.slice(i + 1, j).some((id) => !lane.has(id));
  };
  const key = (e) => `${e.from}>${e.to}`;
  const declared = new Set(edges.map(key));
  for (const e of edges) {
    if (!e.loop && !e.chain) e.over = between(e.from, e.to);
  }

  // Ports: each edge gets a point of its own on a box's top or bottom, in the order of where it
  // goes, so that they do not cross next to the box and their arrowheads stay apart.
  const tops = new Map();
  const bottoms = new Map();
  edges.forEach((e) => {
    if (e.chain) {
      const c = e.chain;
      push(bottoms, c[0], { e, end: e.up ? 'end' : 'start', toward: cx.get(c[1]) });
      push(tops, c[c.length - 1], { e, end: e.up ? 'start' : 'end', toward: cx.get(c[c.length - 2]) });
    } else if (e.over) {
      push(tops, e.from, { e, end: 'start', toward: cx.get(e.to) });
      push(tops, e.to, { e, end: 'end', toward: cx.get(e.from) });
    }
  });
  const spread = (ports, name, y, room) => {
    const n = nodes.get(name);
    const lo = n.x + PORT_PAD;
    const hi = n.x + NODE_W - PORT_PAD - room;
    ports.sort((a, b) => a.toward - b.toward);
    ports.forEach((p, k) => { p.e[p.end] = [lo + ((hi - lo) * (k + 1)) / (ports.length + 1), y]; });
  };
  for (const [name, ports] of tops) spread(ports, name, nodes.get(name).y, looped.has(name) ? LOOP_ROOM : 0);
  for (const [name, ports] of bottoms) spread(ports, name, nodes.get(name).y + NODE_H, 0);

  let reach = 0;
  for (const e of edges) {
    const a = nodes.get(e.from);
    const b = nodes.get(e.to);
    if (e.loop) {
      e.start = [a.x + NODE_W - 14, a.y];
      e.end = [a.x + NODE_W, a.y + 12];
      e.d = `M${e.start[0]},${e.start[1]} C${e.start[0]},${a.y - LOOP_ROOM} ${a.x + NODE_W + LOOP_ROOM},${e.end[1]} ${e.end[0]},${e.end[1]}`;
      reach = Math.max(reach, a.x + NODE_W + LOOP_ROOM);
    } else if (e.chain) {
      const points = [];
      for (const id of e.chain.slice(1, -1)) points.push([cx.get(id), top(layerOf(id))], [cx.get(id), top(layerOf(id)) + NODE_H]);
      const all = [e.up ? e.end : e.start, ...points, e.up ? e.start : e.end];
      e.d = chainPath(e.up ? all.reverse() : all);
    } else if (e.over) {
      const [[x1, y], [x2]] = [e.start, e.end];
      const r = Math.min(8, Math.abs(x2 - x1) / 2) * Math.sign(x2 - x1);
      const yo = y - OVER;
      e.d = `M${x1},${y} L${x1},${yo + 8} Q${x1},${yo} ${x1 + r},${yo} L${x2 - r},${yo} Q${x2},${yo} ${x2},${yo + 8} L${x2},${y}`;
    } else {
      // Neighbours: both ways drawn apart, below the middle (a self loop's arrow is above it).
      const both = declared.has(`${e.to}>${e.from}`);
      const y = a.y + NODE_H / 2 + 5 + (both ? (a.x < b.x ? -5 : 5) : 0);
      e.start = [a.x < b.x ? a.x + NODE_W : a.x, y];
      e.end = [a.x < b.x ? b.x : b.x + NODE_W, y];
      e.d = `M${e.start[0]},${y} L${e.end[0]},${y}`;
    }
  }
  for (const n of nodes.values()) reach = Math.max(reach, n.x + NODE_W);
  for (const id of lane) reach = Math.max(reach, cx.get(id));
  for (const e of edges) {
    delete e.chain;
    delete e.up;
    delete e.over;
  }
  return {
    nodes: [...nodes.values()],
    edges,
    width: Math.ceil(reach + MARGIN),
    height: top(last) + NODE_H + MARGIN,
  };
}

/**
 * The transitions a run took (`taken`: a set of "From>To") that the workflow does not declare:
 * an operator's retry of a Failed run, a re-arm.
 */
export function extraEdges(workflow, taken) {
  const known = new Set(workflow.states.map((s) => s.name));
  const declared = new Set(workflow.edges.map((e) => `${e.from}>${e.to}`));
  const out = [];
  for (const key of taken) {
    const [from, to] = key.split('>');
    if (declared.has(key) || from === to || !known.has(from) || !known.has(to)) continue;
    out.push({ from, to });
  }
  return out;
}

const SVG = 'http://www.w3.org/2000/svg';

function el(doc, name, attrs, text) {
  const e = doc.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * The diagram as an SVG element: states the run passed through drawn solid, the others dashed,
 * transitions it took thick (drawn over the others), its current state marked (a double frame
 * and "now").
 */
export function renderDiagram(doc, workflow, history, current) {
  const { states: visited, edges: taken, stays } = pathOf(history);
  const { nodes, edges, width, height } = layout(workflow, extraEdges(workflow, taken));
  const seen = new Set(visited);
  const svg = el(doc, 'svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    class: 'diagram',
    role: 'img',
    'aria-label': `State diagram of the ${workflow.kind} workflow; path taken: ${visited.join(', ')}; now ${current}`,
  });
  // Drawn as wide as its box, but no smaller than 4/5 of its size (13 px labels stay above 10 px;
  // a narrower screen scrolls it) and no larger than 5/4. (Style properties, not a style
  // attribute: the page's Content-Security-Policy allows them.)
  if (svg.style) {
    svg.style.minWidth = `${Math.round(width * 0.8)}px`;
    svg.style.maxWidth = `${Math.round(width * 1.25)}px`;
  }
  const defs = el(doc, 'defs', {});
  for (const id of ['arrow', 'arrow-taken']) {
    const marker = el(doc, 'marker', {
      id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse',
    });
    marker.append(el(doc, 'path', { d: 'M0,0 L10,5 L0,10 z', class: id }));
    defs.append(marker);
  }
  svg.append(defs);
  const drawn = edges.map((e) => ({ ...e, taken: e.loop ? stays.has(e.from) : taken.has(`${e.from}>${e.to}`) }));
  for (const e of [...drawn.filter((x) => !x.taken), ...drawn.filter((x) => x.taken)]) {
    const path = el(doc, 'path', {
      d: e.d,
      class: `edge${e.loop ? ' loop' : ''}${e.taken ? ' taken' : ''}${e.extra ? ' extra' : ''}`,
      'marker-end': `url(#${e.taken ? 'arrow-taken' : 'arrow'})`,
      'data-edge': `${e.from}>${e.to}`,
    });
    if (e.extra) path.append(el(doc, 'title', {}, `${e.from} \u2192 ${e.to}: by an operator (retry)`));
    else if (e.loop) path.append(el(doc, 'title', {}, `${e.from} \u2192 ${e.from}: stays (a poll, a retry)`));
    svg.append(path);
  }
  for (const n of nodes) {
    const classes = ['node', seen.has(n.name) ? 'visited' : 'unvisited'];
    if (n.terminal) classes.push('terminal');
    if (n.name === current) classes.push('current');
    const g = el(doc, 'g', { class: classes.join(' '), 'data-state': n.name });
    g.append(el(doc, 'rect', { x: n.x, y: n.y, width: NODE_W, height: NODE_H, rx: n.terminal ? 18 : 4 }));
    if (n.name === current) {
      g.append(el(doc, 'rect', {
        x: n.x - 4, y: n.y - 4, width: NODE_W + 8, height: NODE_H + 8, rx: n.terminal ? 22 : 7, class: 'frame',
      }));
    }
    const label = `${glyph(n.name)} ${n.name}${n.name === current ? ' (now)' : ''}`;
    g.append(el(doc, 'text', { x: n.x + NODE_W / 2, y: n.y + NODE_H / 2 + 5, 'text-anchor': 'middle' }, label));
    svg.append(g);
  }
  return svg;
}
