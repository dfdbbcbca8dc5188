// The workflow's state diagram: a layered layout (pure, tested with `node --test`) and its SVG.

import { glyph, pathOf } from './format.js';

export const NODE_W = 132;
export const NODE_H = 38;
const GAP_X = 20;
const GAP_Y = 46;
const MARGIN = 16;
const LOOP_ROOM = 40;

/**
 * Places the states of `workflow` ({initial, states: [{name, terminal}], edges: [{from, to}]}) in
 * layers from top to bottom: the initial state first, each other unfinished state one layer below
 * the nearest state it is reached from, and the terminal states together in the last layer.
 * Returns nodes with their box, edges marked `back` when they go up or sideways, and the size.
 */
export function layout(workflow) {
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
  const layers = Array.from({ length: last + 1 }, () => []);
  for (const n of names) layers[depth.get(n)].push(n);
  const widest = Math.max(...layers.map((l) => l.length));
  const width = MARGIN * 2 + widest * NODE_W + (widest - 1) * GAP_X + LOOP_ROOM;
  const nodes = new Map();
  layers.forEach((layer, i) => {
    const row = layer.length * NODE_W + (layer.length - 1) * GAP_X;
    const x0 = MARGIN + ((widest * NODE_W + (widest - 1) * GAP_X) - row) / 2;
    layer.forEach((name, j) => {
      nodes.set(name, {
        name,
        layer: i,
        x: x0 + j * (NODE_W + GAP_X),
        y: MARGIN + i * (NODE_H + GAP_Y),
        terminal: terminal.has(name),
      });
    });
  });
  const edges = workflow.edges
    .filter((e) => e.from !== e.to && nodes.has(e.from) && nodes.has(e.to))
    .map((e) => ({ ...e, back: nodes.get(e.to).layer <= nodes.get(e.from).layer }));
  const height = MARGIN * 2 + layers.length * NODE_H + (layers.length - 1) * GAP_Y;
  return { nodes: [...nodes.values()], edges, width, height };
}

/**
 * The SVG path of an edge: down from the bottom of one box to the top of the other; sideways
 * between the facing sides of two boxes in one layer; or, for one going back up, a curve out to
 * the right.
 */
export function edgePath(a, b, back) {
  if (!back) {
    const x1 = a.x + NODE_W / 2;
    const y1 = a.y + NODE_H;
    const x2 = b.x + NODE_W / 2;
    const y2 = b.y;
    const my = (y1 + y2) / 2;
    return `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`;
  }
  if (a.y === b.y) {
    const y = a.y + NODE_H / 2;
    return a.x < b.x ? `M${a.x + NODE_W},${y} L${b.x},${y}` : `M${a.x},${y} L${b.x + NODE_W},${y}`;
  }
  const x1 = a.x + NODE_W;
  const y1 = a.y + NODE_H / 2;
  const x2 = b.x + NODE_W;
  const y2 = b.y + NODE_H / 2;
  const out = Math.max(x1, x2) + LOOP_ROOM;
  return `M${x1},${y1} C${out},${y1} ${out},${y2} ${x2},${y2}`;
}

/**
 * The edges to draw for a run: the workflow's, each marked `taken` when the run took it, plus the
 * transitions the run took that the workflow does not declare (an operator's retry of a Failed
 * run, a re-arm), marked `extra`.
 */
export function runEdges(l, taken) {
  const layer = new Map(l.nodes.map((n) => [n.name, n.layer]));
  const declared = new Set(l.edges.map((e) => `${e.from}>${e.to}`));
  const out = l.edges.map((e) => ({ ...e, taken: taken.has(`${e.from}>${e.to}`), extra: false }));
  for (const key of taken) {
    const [from, to] = key.split('>');
    if (declared.has(key) || from === to || !layer.has(from) || !layer.has(to)) continue;
    out.push({ from, to, back: layer.get(to) <= layer.get(from), taken: true, extra: true });
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
 * transitions it took thick, its current state marked (a double frame and "now").
 */
export function renderDiagram(doc, workflow, history, current) {
  const { nodes, edges, width, height } = layout(workflow);
  const { states: visited, edges: taken } = pathOf(history);
  const seen = new Set(visited);
  const at = new Map(nodes.map((n) => [n.name, n]));
  const svg = el(doc, 'svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'diagram',
    role: 'img',
    'aria-label': `State diagram of the ${workflow.kind} workflow; path taken: ${visited.join(', ')}; now ${current}`,
  });
  const defs = el(doc, 'defs', {});
  for (const id of ['arrow', 'arrow-taken']) {
    const marker = el(doc, 'marker', {
      id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse',
    });
    marker.append(el(doc, 'path', { d: 'M0,0 L10,5 L0,10 z', class: id }));
    defs.append(marker);
  }
  svg.append(defs);
  for (const e of runEdges({ nodes, edges }, taken)) {
    const path = el(doc, 'path', {
      d: edgePath(at.get(e.from), at.get(e.to), e.back),
      class: `edge${e.taken ? ' taken' : ''}${e.extra ? ' extra' : ''}`,
      'marker-end': `url(#${e.taken ? 'arrow-taken' : 'arrow'})`,
      'data-edge': `${e.from}>${e.to}`,
    });
    if (e.extra) path.append(el(doc, 'title', {}, `${e.from} \u2192 ${e.to}: by an operator (retry)`));
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
