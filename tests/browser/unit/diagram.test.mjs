// Unit tests of the state diagram (node --test, no packages): its layout, and the geometry of the
// SVG it draws for every workflow the service serves (fixtures/workflows.json: what
// GET /api/v1/workflows answers, less the prose; the browser test checks that it still is).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { NODE_H, NODE_W, extraEdges, layout, renderDiagram } from '../../../assets/console/diagram.js';

const here = new URL('.', import.meta.url);
const WORKFLOWS = JSON.parse(readFileSync(new URL('fixtures/workflows.json', here), 'utf8'));
const training = WORKFLOWS.find((w) => w.kind === 'training');

// ---- A minimal document, enough for renderDiagram, and what it drew ----------------------------

function fakeDocument() {
  const make = (name) => ({
    name,
    attrs: {},
    children: [],
    textContent: '',
    setAttribute(k, v) { this.attrs[k] = v; },
    getAttribute(k) { return this.attrs[k]; },
    append(...c) { this.children.push(...c); },
  });
  return { createElementNS: (_ns, name) => make(name) };
}

function* walk(e) {
  yield e;
  for (const c of e.children) yield* walk(c);
}

/** Points along an SVG path of absolute M, L, Q and C commands, at most ~1 unit apart. */
function sample(d) {
  const tokens = d.match(/[MLQC]|-?\d+(?:\.\d+)?(?:e-?\d+)?/g);
  const points = [];
  let at = null;
  let i = 0;
  const num = () => Number(tokens[i++]);
  while (i < tokens.length) {
    const cmd = tokens[i++];
    assert.match(cmd, /^[MLQC]$/, `a command the test can follow: ${d}`);
    const ctrl = [at];
    const n = { M: 1, L: 1, Q: 2, C: 3 }[cmd];
    for (let k = 0; k < n; k += 1) ctrl.push([num(), num()]);
    if (cmd === 'M') {
      at = ctrl[1];
      points.push(at);
      continue;
    }
    const len = ctrl.slice(1).reduce((s, p, k) => s + Math.hypot(p[0] - ctrl[k][0], p[1] - ctrl[k][1]), 0);
    const steps = Math.max(1, Math.ceil(len));
    for (let s = 1; s <= steps; s += 1) {
      const t = s / steps;
      // de Casteljau over the control points.
      let ps = ctrl;
      while (ps.length > 1) ps = ps.slice(1).map((p, k) => [ps[k][0] + (p[0] - ps[k][0]) * t, ps[k][1] + (p[1] - ps[k][1]) * t]);
      points.push(ps[0]);
    }
    at = ctrl[ctrl.length - 1];
  }
  return points;
}

/** What renderDiagram drew: the state boxes and the edges as sampled polylines. */
function drawn(workflow, history = [], current = workflow.initial) {
  const svg = renderDiagram(fakeDocument(), workflow, history, current);
  const boxes = new Map();
  const edges = [];
  for (const e of walk(svg)) {
    if (e.name === 'g' && e.attrs['data-state']) {
      const r = e.children.find((c) => c.name === 'rect');
      boxes.set(e.attrs['data-state'], { x: Number(r.attrs.x), y: Number(r.attrs.y), w: Number(r.attrs.width), h: Number(r.attrs.height) });
    }
    if (e.name === 'path' && e.attrs['data-edge']) {
      const [from, to] = e.attrs['data-edge'].split('>');
      edges.push({ from, to, cls: e.attrs.class, points: sample(e.attrs.d) });
    }
  }
  const [, , width, height] = svg.attrs.viewBox.split(' ').map(Number);
  return { boxes, edges, width, height };
}

const inside = (p, b, pad) => p[0] > b.x - pad && p[0] < b.x + b.w + pad && p[1] > b.y - pad && p[1] < b.y + b.h + pad;

/** Every drawing to check for a workflow: as declared, and with each retry an operator may make
 * (Failed back to any unfinished state: the edges a run takes that the workflow does not declare). */
function drawings(w) {
  const out = [{ what: 'declared', ...drawn(w) }];
  for (const s of w.states.filter((x) => !x.terminal)) {
    const history = [{ from_state: null, to_state: 'Failed' }, { from_state: 'Failed', to_state: s.name }];
    out.push({ what: `retried into ${s.name}`, ...drawn(w, history, s.name) });
  }
  return out;
}

/** Pairs of edges whose lines cross (away from the boxes they leave and enter). */
function crossings(edges) {
  const cross = (p1, p2, p3, p4) => {
    const d = (a, b, c) => (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    return d(p1, p2, p3) * d(p1, p2, p4) < 0 && d(p3, p4, p1) * d(p3, p4, p2) < 0;
  };
  let n = 0;
  for (let i = 0; i < edges.length; i += 1) {
    for (let j = i + 1; j < edges.length; j += 1) {
      const a = edges[i].points;
      const b = edges[j].points;
      let hit = false;
      for (let p = 1; p < a.length && !hit; p += 1) {
        for (let q = 1; q < b.length && !hit; q += 1) hit = cross(a[p - 1], a[p], b[q - 1], b[q]);
      }
      if (hit) n += 1;
    }
  }
  return n;
}

// ---- The real workflows ---------------------------------------------------------------------

test('the fixture holds every workflow in workflows/, with the same edges', () => {
  const dir = new URL('../../../workflows/', here);
  const files = readdirSync(dir).filter((f) => f.endsWith('.toml')).sort();
  assert.deepEqual(WORKFLOWS.map((w) => `${w.kind}.toml`).sort(), files);
  for (const f of files) {
    const text = readFileSync(new URL(f, dir), 'utf8');
    const block = text.match(/^edges = \[([\s\S]*?)^\]/m)[1];
    const edges = [...block.matchAll(/\["(\w+)",\s*"(\w+)"\]/g)].map((m) => `${m[1]}>${m[2]}`);
    const w = WORKFLOWS.find((x) => `${x.kind}.toml` === f);
    assert.deepEqual(w.edges.map((e) => `${e.from}>${e.to}`), edges, `${f}: refresh fixtures/workflows.json`);
  }
});

for (const w of WORKFLOWS) {
  test(`${w.kind}: no edge passes through or close by a box it does not leave or enter`, () => {
    for (const { what, boxes, edges } of drawings(w)) {
      for (const e of edges) {
        for (const [name, b] of boxes) {
          const own = name === e.from || name === e.to;
          // Its own boxes it may touch, on their sides; others it keeps 6 units from.
          const bad = e.points.find((p) => inside(p, b, own ? -0.5 : 6));
          assert.equal(bad, undefined, `${what}: ${e.from}\u2192${e.to} runs through ${name} at ${bad}`);
        }
      }
    }
  });

  test(`${w.kind}: every edge is drawn, self edges as loops, all inside the drawing`, () => {
    for (const { what, edges, width, height } of drawings(w)) {
      for (const d of w.edges) {
        const e = edges.find((x) => x.from === d.from && x.to === d.to);
        assert.ok(e, `${what}: ${d.from}\u2192${d.to} is drawn`);
        if (d.from === d.to) {
          assert.match(e.cls, /\bloop\b/);
          const xs = e.points.map((p) => p[0]);
          const ys = e.points.map((p) => p[1]);
          assert.ok(Math.max(...xs) - Math.min(...xs) >= 10 && Math.max(...ys) - Math.min(...ys) >= 10, `${d.from}'s loop is visible`);
        }
      }
      for (const e of edges) {
        const out = e.points.find((p) => p[0] < 0 || p[1] < 0 || p[0] > width || p[1] > height);
        assert.equal(out, undefined, `${what}: ${e.from}\u2192${e.to} leaves the drawing at ${out}`);
      }
    }
  });

  test(`${w.kind}: arrowheads stay apart, each on the box its edge enters`, () => {
    for (const { what, boxes, edges } of drawings(w)) {
      const tips = edges.map((e) => ({ e, at: e.points[e.points.length - 1] }));
      for (const { e, at } of tips) {
        const b = boxes.get(e.to);
        assert.ok(inside(at, b, 0.5) && !inside(at, b, -0.5), `${what}: ${e.from}\u2192${e.to} ends on ${e.to}'s side`);
      }
      for (let i = 0; i < tips.length; i += 1) {
        for (let j = i + 1; j < tips.length; j += 1) {
          const gap = Math.hypot(tips[i].at[0] - tips[j].at[0], tips[i].at[1] - tips[j].at[1]);
          assert.ok(gap >= 12, `${what}: the arrowheads of ${tips[i].e.from}\u2192${tips[i].e.to} and ${tips[j].e.from}\u2192${tips[j].e.to} are ${gap.toFixed(1)} apart`);
        }
      }
    }
  });
}

test('edges cross each other seldom', () => {
  // At most the crossings of each workflow's declared edges the layout reaches today, so that a
  // change that makes it worse is seen.
  const most = { automl: 3, deployment: 2, script: 6, teardown: 1, training: 3, transform: 1 };
  for (const w of WORKFLOWS) {
    const n = crossings(drawn(w).edges);
    console.log(`${w.kind}: ${n} crossings`);
    assert.ok(n <= (most[w.kind] ?? 0), `${w.kind}: ${n} crossings`);
  }
});

// ---- The layout's rules ---------------------------------------------------------------------

function at(l, name) {
  return l.nodes.find((n) => n.name === name);
}

test('states are layered from the initial one, terminal states last', () => {
  const l = layout(training);
  assert.equal(at(l, 'Uploading').layer, 0);
  assert.equal(at(l, 'Submitted').layer, 1);
  assert.equal(at(l, 'Polling').layer, 2);
  assert.equal(at(l, 'Cancelling').layer, 2);
  for (const t of ['Done', 'Failed', 'Cancelled']) assert.equal(at(l, t).layer, 3, t);
});

test('no two states overlap and all fit in the drawing', () => {
  for (const w of WORKFLOWS) {
    const l = layout(w, [{ from: 'Failed', to: w.initial }]);
    for (const a of l.nodes) {
      assert.ok(a.x >= 0 && a.y >= 0 && a.x + NODE_W <= l.width && a.y + NODE_H <= l.height, a.name);
      for (const b of l.nodes) {
        if (a === b) continue;
        const apart = a.x + NODE_W <= b.x || b.x + NODE_W <= a.x || a.y + NODE_H <= b.y || b.y + NODE_H <= a.y;
        assert.ok(apart, `${w.kind}: ${a.name} overlaps ${b.name}`);
      }
    }
  }
});

test('edges going up or sideways are marked back; self edges are loops', () => {
  const l = layout(training, [{ from: 'Failed', to: 'Submitted' }]);
  const edge = (from, to) => l.edges.find((e) => e.from === from && e.to === to);
  assert.equal(edge('Failed', 'Submitted').back, true);
  assert.equal(edge('Failed', 'Submitted').extra, true);
  assert.equal(edge('Cancelling', 'Polling').back, true);
  assert.equal(edge('Uploading', 'Submitted').back, false);
  assert.equal(edge('Polling', 'Polling').loop, true);
  assert.equal(l.edges.length, training.edges.length + 1);
});

test('a state no edge reaches still gets a place', () => {
  const l = layout({
    ...training,
    states: [...training.states, { name: 'Collecting', terminal: false }],
  });
  assert.equal(at(l, 'Collecting').layer, 3);
  assert.equal(at(l, 'Done').layer, 4);
});

test('an edge within a layer past another state goes over it, not through it', () => {
  const w = {
    kind: 'test',
    initial: 'A',
    states: ['A', 'B', 'C', 'D', 'Done'].map((name) => ({ name, terminal: name === 'Done' })),
    edges: [['A', 'B'], ['A', 'C'], ['A', 'D'], ['B', 'D'], ['D', 'B'], ['B', 'Done'], ['C', 'Done'], ['D', 'Done']]
      .map(([from, to]) => ({ from, to })),
  };
  const { boxes, edges } = drawn(w);
  for (const e of edges) {
    for (const [name, b] of boxes) {
      if (name === e.from || name === e.to) continue;
      assert.equal(e.points.find((p) => inside(p, b, 6)), undefined, `${e.from}\u2192${e.to} runs through ${name}`);
    }
  }
});

test("a run's path: the declared edges it took, its stays, and an operator's retry as an extra edge", () => {
  const history = [
    { from_state: null, to_state: 'Uploading' },
    { from_state: 'Uploading', to_state: 'Submitted' },
    { from_state: 'Submitted', to_state: 'Submitted' },
    { from_state: 'Submitted', to_state: 'Failed' },
    { from_state: 'Failed', to_state: 'Submitted' },
  ];
  const taken = drawn(training, history, 'Submitted').edges.filter((e) => /\btaken\b/.test(e.cls))
    .map((e) => `${e.from}>${e.to}${/\bextra\b/.test(e.cls) ? ' extra' : ''}`).sort();
  assert.deepEqual(taken, ['Failed>Submitted extra', 'Submitted>Failed', 'Submitted>Submitted', 'Uploading>Submitted']);
  assert.deepEqual(
    extraEdges(training, new Set(['Uploading>Submitted', 'Failed>Submitted', 'Nowhere>Done', 'Polling>Polling'])),
    [{ from: 'Failed', to: 'Submitted' }],
  );
});
