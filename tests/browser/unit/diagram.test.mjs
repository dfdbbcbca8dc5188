// Unit tests of the state diagram's layout (node --test, no packages).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_H, NODE_W, edgePath, layout, runEdges } from '../../../assets/console/diagram.js';

const training = {
  kind: 'training',
  initial: 'Uploading',
  states: ['Uploading', 'Submitted', 'Polling', 'Cancelling', 'Done', 'Failed', 'Cancelled']
    .map((name) => ({ name, terminal: ['Done', 'Failed', 'Cancelled'].includes(name) })),
  edges: [
    ['Uploading', 'Submitted'], ['Uploading', 'Failed'], ['Uploading', 'Cancelled'],
    ['Submitted', 'Polling'], ['Submitted', 'Failed'], ['Submitted', 'Cancelling'],
    ['Polling', 'Polling'], ['Polling', 'Done'], ['Polling', 'Failed'], ['Polling', 'Cancelling'],
    ['Cancelling', 'Cancelled'], ['Cancelling', 'Done'], ['Cancelling', 'Failed'],
  ].map(([from, to]) => ({ from, to })),
};

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
  const l = layout(training);
  for (const a of l.nodes) {
    assert.ok(a.x >= 0 && a.y >= 0 && a.x + NODE_W <= l.width && a.y + NODE_H <= l.height, a.name);
    for (const b of l.nodes) {
      if (a === b) continue;
      const apart = a.x + NODE_W <= b.x || b.x + NODE_W <= a.x || a.y + NODE_H <= b.y || b.y + NODE_H <= a.y;
      assert.ok(apart, `${a.name} overlaps ${b.name}`);
    }
  }
});

test('self loops are left out and edges going up are marked back', () => {
  const l = layout({
    ...training,
    edges: [...training.edges, { from: 'Failed', to: 'Submitted' }],
  });
  assert.ok(!l.edges.some((e) => e.from === e.to));
  assert.equal(l.edges.find((e) => e.from === 'Failed').back, true);
  assert.equal(l.edges.find((e) => e.from === 'Uploading' && e.to === 'Submitted').back, false);
});

test('a state no edge reaches still gets a place', () => {
  const l = layout({
    ...training,
    states: [...training.states, { name: 'Collecting', terminal: false }],
  });
  assert.equal(at(l, 'Collecting').layer, 3);
  assert.equal(at(l, 'Done').layer, 4);
});

test('edges leave the bottom of one box and enter the top of the next', () => {
  const a = { x: 0, y: 0 };
  const b = { x: 0, y: 100 };
  assert.equal(edgePath(a, b, false), `M${NODE_W / 2},${NODE_H} C${NODE_W / 2},${(NODE_H + 100) / 2} ${NODE_W / 2},${(NODE_H + 100) / 2} ${NODE_W / 2},100`);
  assert.match(edgePath(b, a, true), new RegExp(`^M${NODE_W},`));
  const right = { x: 200, y: 0 };
  assert.equal(edgePath(a, right, true), `M${NODE_W},${NODE_H / 2} L200,${NODE_H / 2}`, 'sideways, facing sides');
  assert.equal(edgePath(right, a, true), `M200,${NODE_H / 2} L${NODE_W},${NODE_H / 2}`);
});

test("a run's edges: the declared ones it took, and an operator's retry drawn as an extra one", () => {
  const l = layout(training);
  const edges = runEdges(l, new Set(['Uploading>Submitted', 'Submitted>Failed', 'Failed>Submitted', 'Nowhere>Done']));
  const taken = edges.filter((e) => e.taken).map((e) => `${e.from}>${e.to}${e.extra ? ' extra' : ''}`);
  assert.deepEqual(taken, ['Uploading>Submitted', 'Submitted>Failed', 'Failed>Submitted extra']);
  assert.equal(edges.find((e) => e.extra).back, true, 'the retry goes back up');
  assert.equal(edges.length, l.edges.length + 1);
});
