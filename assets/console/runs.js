// The runs page: filters (kept in the URL), counts per state, the table, cursor paging.

import { get } from './api.js';
import { h, patch } from './dom.js';
import {
  KINDS, STATES, age, filtersFrom, fromRfc3339, glyph, queryOf, toRfc3339, utc,
} from './format.js';

export function stateLabel(state) {
  return h('span', { class: `state state-${state}`, 'data-state': state },
    h('span', { class: 'glyph', 'aria-hidden': 'true', text: glyph(state) }),
    ` ${state}`);
}

function select(name, label, options, value) {
  const s = h('select', { name, id: `f-${name}` },
    ...options.map(([v, text]) => h('option', { value: v, selected: v === (value ?? ''), text })));
  return h('label', { for: `f-${name}` }, `${label} `, s);
}

function input(name, label, type, value, extra = {}) {
  return h('label', { for: `f-${name}` }, `${label} `,
    h('input', { name, id: `f-${name}`, type, value: value ?? '', ...extra }));
}

export async function renderRuns(main, params, ctx) {
  const filters = filtersFrom(params);
  document.title = `Runs${filters.state ? ` (${filters.state})` : ''} \u00b7 sagemaker-executor`;
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    select('state', 'State', [['', 'any'], ...STATES.map((s) => [s, s])], filters.state),
    select('kind', 'Kind', [['', 'any'], ...KINDS.map((k) => [k, k])], filters.kind),
    select('has_error', 'Error', [['', 'any'], ['true', 'has an error'], ['false', 'no error']], filters.has_error),
    select('degraded', 'Degraded', [['', 'any'], ['true', 'degraded'], ['false', 'not degraded']], filters.degraded),
    input('stuck_secs', 'Stuck for (s)', 'number', filters.stuck_secs, { min: 1, inputmode: 'numeric' }),
    input('created_after', 'Created after (UTC)', 'datetime-local', fromRfc3339(filters.created_after), { step: 1 }),
    input('created_before', 'Created before (UTC)', 'datetime-local', fromRfc3339(filters.created_before), { step: 1 }),
    input('updated_after', 'Changed after (UTC)', 'datetime-local', fromRfc3339(filters.updated_after), { step: 1 }),
    input('updated_before', 'Changed before (UTC)', 'datetime-local', fromRfc3339(filters.updated_before), { step: 1 }),
    h('div', { class: 'filter-buttons' },
      h('button', { type: 'submit', text: 'Apply' }),
      h('button', { type: 'button', class: 'secondary', id: 'clear-filters', text: 'Clear' })));

  const apply = (next) => ctx.navigate(`/runs${queryOf(next) ? `?${queryOf(next)}` : ''}`);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    for (const k of ['created_after', 'created_before', 'updated_after', 'updated_before']) f[k] = toRfc3339(f[k]);
    apply(f); // a new filter starts at the first page
  });
  form.querySelector('#clear-filters').addEventListener('click', () => apply({}));

  const summary = h('nav', { class: 'summary', 'aria-label': 'Runs per state' });
  const tbody = h('tbody');
  const table = h('table', { class: 'runs' },
    h('caption', { class: 'visually-hidden', text: 'Runs, newest first' }),
    h('thead', {}, h('tr', {},
      ...['State', 'Kind', 'Job / resource', 'Age', 'Last change', 'Error'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  const empty = h('p', { class: 'empty', hidden: true, text: 'No runs match these filters.' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  main.replaceChildren(
    h('h1', { text: 'Runs' }),
    summary,
    h('details', { class: 'filter-box', open: Object.keys(filters).some((k) => k !== 'cursor' && k !== 'state') },
      h('summary', { text: 'Filters' }), form),
    h('div', { class: 'table-wrap' }, table),
    empty,
    pager);

  function drawSummary(counts) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const chip = (state, n, label) => {
      const active = (filters.state ?? '') === state;
      const b = h('a', {
        class: `chip${state ? ` state-${state}` : ''}`,
        href: `#/runs${queryOf({ ...filters, state, cursor: '' }) ? `?${queryOf({ ...filters, state, cursor: '' })}` : ''}`,
        'aria-current': active ? 'true' : null,
        'data-count-state': state || 'all',
      }, state ? h('span', { class: 'glyph', 'aria-hidden': 'true', text: glyph(state) }) : null,
      ` ${label} `, h('strong', { class: 'count', text: String(n) }));
      return b;
    };
    patch(summary, [chip('', total, 'All'), ...STATES.map((s) => chip(s, counts[s] ?? 0, s))],
      (a) => a.dataset.countState);
  }

  function drawRows(runs, now) {
    patch(tbody, runs.map((r) => h('tr', { 'data-run': r.id, 'data-state': r.state },
      h('td', { 'data-label': 'State' }, stateLabel(r.state),
        r.cancel_requested && !['Cancelled', 'Done', 'Failed'].includes(r.state)
          ? h('span', { class: 'tag', text: 'cancel requested' }) : null,
        r.degraded ? h('span', { class: 'tag', title: r.degraded.last_error ?? '', text: 'degraded' }) : null),
      h('td', { 'data-label': 'Kind', text: r.kind }),
      h('td', { 'data-label': 'Job' }, h('a', { href: `#/runs/${r.id}`, text: r.name ?? r.id })),
      h('td', { 'data-label': 'Age', title: utc(r.created_at), text: age(r.created_at, now) }),
      h('td', { 'data-label': 'Last change', title: utc(r.updated_at), text: `${age(r.updated_at, now)} ago` }),
      h('td', { 'data-label': 'Error', class: 'error-cell', title: r.last_error ?? '', text: r.last_error ?? '' }))),
    (tr) => tr.dataset.run);
    empty.hidden = runs.length > 0;
  }

  function drawPager(next) {
    const links = [];
    if (filters.cursor) {
      links.push(h('a', { href: `#/runs${queryOf({ ...filters, cursor: '' }) ? `?${queryOf({ ...filters, cursor: '' })}` : ''}`, text: '\u21E4 Newest' }));
    }
    if (next) {
      links.push(h('a', { href: `#/runs?${queryOf({ ...filters, cursor: next })}`, rel: 'next', text: 'Older \u2192' }));
    }
    pager.replaceChildren(...links);
  }

  async function refresh() {
    // Page size: 50 unless the URL says (`limit`, 1 to 1000, as the API takes it).
    const page = await get(`/api/v1/runs?${queryOf({ limit: 50, ...filters })}`);
    drawSummary(page.counts ?? {});
    drawRows(page.runs, Date.now());
    drawPager(page.next_cursor);
  }
  await refresh();
  return { refresh };
}
