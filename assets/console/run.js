// A run's page: its state and AWS names, actions (retry, cancel), lease and timing, the timeline
// of its history, the workflow diagram with its path, its request, and per kind the script's log
// and outputs or the endpoint's status.

import { call, get } from './api.js';
import { h } from './dom.js';
import { awsNames, explainAnswer, glyph, isTerminal, utc } from './format.js';
import { renderDiagram } from './diagram.js';
import { stateLabel } from './runs.js';


let workflows = null;

async function workflowOf(kind) {
  workflows ??= await get('/api/v1/workflows');
  return workflows.find((w) => w.kind === kind) ?? null;
}

function dl(rows) {
  return h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
}

function timeline(history) {
  return h('ol', { class: 'timeline' }, ...history.map((e) => h('li', {
    class: `event${e.error ? ' has-error' : ''}`, 'data-to': e.to_state,
  },
  h('div', { class: 'event-head' },
    h('time', { datetime: e.at, text: utc(e.at) }),
    ' ',
    e.from_state ? h('span', { text: `${glyph(e.from_state)} ${e.from_state} \u2192 ` }) : h('span', { text: 'accepted \u2192 ' }),
    stateLabel(e.to_state),
    h('span', { class: 'attempt', text: ` attempt ${e.attempt}${e.repeats > 1 ? ` (\u00d7${e.repeats})` : ''}` })),
  e.detail ? h('p', { class: 'detail', text: e.detail }) : null,
  e.error ? h('p', { class: 'event-error' },
    h('strong', { text: `\u26A0 ${e.error_class ?? 'error'}: ` }), e.error) : null)));
}

/** What the role may do with a run in this state. */
export function allowedActions(role, run) {
  const actions = [];
  if (role === 'operator' && (run.state === 'Failed' || !isTerminal(run.state))) actions.push('retry');
  // A Failed run whose job may still be running can be cancelled (the API decides; 409 if not).
  if (!isTerminal(run.state) || run.state === 'Failed') {
    if (!run.cancel_requested || run.state === 'Failed') actions.push('cancel');
  }
  return actions;
}

export async function renderRun(main, id, ctx) {
  let run = await get(`/api/v1/runs/${id}`);
  const workflow = await workflowOf(run.kind);

  const title = h('h1', {});
  const headFacts = h('div', { class: 'run-head' });
  const actionsBox = h('section', { class: 'actions', 'aria-labelledby': 'actions-title' });
  const answer = h('p', { class: 'answer', role: 'status', 'aria-live': 'polite' });
  const details = h('div', { class: 'run-details' });
  const extras = h('section', { class: 'extras' });

  // Actions: one reason field, a button per allowed action, and a confirmation dialog.
  const reason = h('textarea', { id: 'reason', name: 'reason', rows: 2, maxlength: 1000, placeholder: 'Why (recorded in the history)' });
  const buttons = h('div', { class: 'action-buttons' });
  const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' });
  const dialogText = h('p', { id: 'confirm-title' });
  const confirmButton = h('button', { type: 'button', class: 'danger', id: 'confirm-yes', text: 'Yes' });
  const backButton = h('button', { type: 'button', class: 'secondary', id: 'confirm-no', text: 'No, go back' });
  dialog.append(dialogText, h('div', { class: 'dialog-buttons' }, confirmButton, backButton));
  actionsBox.append(h('h2', { id: 'actions-title', text: 'Actions' }),
    h('label', { for: 'reason', text: 'Reason (optional)' }), reason, buttons, answer, dialog);
  let pending = null;
  backButton.addEventListener('click', () => dialog.close());
  confirmButton.addEventListener('click', async () => {
    const action = pending;
    dialog.close();
    if (!action) return;
    const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
    answer.textContent = `Sending the ${action}\u2026`;
    const r = await call(`/api/v1/runs/${id}/${action}`, { method: 'POST', body });
    answer.textContent = explainAnswer(action, r.status, r.body);
    answer.dataset.status = String(r.status);
    if (r.status === 202) reason.value = '';
    await refresh();
  });

  function drawActions() {
    const allowed = allowedActions(ctx.caller?.role, run);
    buttons.replaceChildren(...allowed.map((a) => {
      const b = h('button', { type: 'button', class: a === 'cancel' ? 'danger' : '', id: `action-${a}`, 'data-action': a, text: a === 'retry' ? '\u21BB Retry' : '\u2298 Cancel' });
      b.addEventListener('click', () => {
        pending = a;
        const why = reason.value.trim();
        dialogText.textContent = a === 'retry'
          ? `Retry run ${run.name ?? run.id} from where it stopped? AWS resources that exist are adopted, never duplicated.${why ? ` Reason: \u201C${why}\u201D.` : ''}`
          : `Cancel run ${run.name ?? run.id}? Its AWS job is stopped.${why ? ` Reason: \u201C${why}\u201D.` : ''}`;
        confirmButton.textContent = a === 'retry' ? 'Yes, retry' : 'Yes, cancel the run';
        dialog.showModal();
        backButton.focus();
      });
      return b;
    }));
    const none = allowed.length === 0;
    reason.hidden = none;
    actionsBox.querySelector('label').hidden = none;
    if (none && !answer.textContent) {
      buttons.replaceChildren(h('p', { class: 'muted', text: isTerminal(run.state) ? `The run is ${run.state}; nothing to do.` : 'Your role has no action on this run.' }));
    }
  }

  function drawDetails() {
    title.replaceChildren(`${run.kind} run `, h('span', { class: 'run-name', text: run.name ?? run.context?.job_name ?? run.id }));
    document.title = `${run.state} \u00b7 ${run.name ?? run.context?.job_name ?? run.id} \u00b7 sagemaker-executor`;
    headFacts.replaceChildren(...[stateLabel(run.state),
      run.cancel_requested && !isTerminal(run.state) ? h('span', { class: 'tag', text: 'cancel requested' }) : null,
      run.degraded ? h('span', { class: 'tag', text: `degraded since ${utc(run.degraded.since)}` }) : null,
      run.last_error ? h('p', { class: 'last-error', role: 'note' }, h('strong', { text: 'Error: ' }), run.last_error) : null,
    ].filter(Boolean));
    const names = awsNames(run).map((n) => [n.label, n.href
      ? h('a', { href: n.href, target: '_blank', rel: 'noopener noreferrer external', class: 'aws-link' }, n.value, h('span', { class: 'visually-hidden', text: ' (AWS console, new tab)' }))
      : h('code', { text: n.value })]);
    const diagram = workflow ? renderDiagram(document, workflow, run.history, run.state) : h('p', { text: 'No workflow definition for this kind.' });
    details.replaceChildren(
      h('section', {}, h('h2', { text: 'AWS' }), names.length ? dl(names) : h('p', { class: 'muted', text: 'Nothing in AWS yet.' })),
      h('section', {}, h('h2', { text: 'Progress' }), dl([
        ['Run id', h('code', { text: run.id })],
        ['Created', utc(run.created_at)],
        ['Last change', utc(run.updated_at)],
        ['Attempt', String(run.attempt)],
        ['Next due', run.next_due_at ? utc(run.next_due_at) : '\u2014 (not scheduled)'],
        ['Lease owner', run.lease_owner ?? '\u2014 (not leased)'],
        ['Lease until', run.lease_until ? utc(run.lease_until) : '\u2014'],
      ])),
      h('section', { class: 'diagram-box' }, h('h2', { text: 'Workflow' }),
        h('p', { class: 'legend', text: 'Solid: states this run passed through; thick arrows: the path it took (long dashes: an operator\u2019s retry; a loop: it stayed in a state for another step); double frame and \u201C(now)\u201D: where it is.' }),
        h('div', { class: 'diagram-scroll', tabindex: '0', role: 'group', 'aria-label': 'Workflow diagram (scrolls sideways when narrow)' }, diagram)),
      h('section', {}, h('h2', { text: 'History' }), timeline(run.history)),
      h('section', {}, h('h2', { text: 'Request' }), h('pre', { class: 'json', text: JSON.stringify(run.request, null, 2) })),
      h('section', {}, h('h2', { text: 'Context' }), h('pre', { class: 'json', text: JSON.stringify(run.context, null, 2) })));
  }

  // Per kind: the script's log and outputs, the endpoint's status.
  if (run.kind === 'script') {
    const out = h('pre', { class: 'json', id: 'script-output', hidden: true });
    const show = (label, path, pick) => {
      const b = h('button', { type: 'button', class: 'secondary', text: label });
      b.addEventListener('click', async () => {
        const r = await call(path);
        out.hidden = false;
        out.textContent = r.status === 200 ? pick(r.body) : `${r.status}: ${r.body?.error ?? ''}`;
      });
      return b;
    };
    extras.append(h('h2', { text: 'Script job' }),
      show('Show log', `/execute/${id}/getLog`, (b) => b?.logs?.content ?? ''),
      ' ',
      show('Show output artifacts', `/execute/${id}/getOutputArtifacts`, (b) => JSON.stringify(b, null, 2)),
      out);
  } else if (run.kind === 'deployment' || run.kind === 'teardown') {
    const endpoint = run.request?.endpoint_name ?? run.name;
    const box = h('div', {}, h('p', { class: 'muted', text: 'Asking the service\u2026' }));
    extras.append(h('h2', { text: `Endpoint ${endpoint ?? ''}` }), box);
    if (endpoint) {
      call(`/api/service/v1/endpoints/${encodeURIComponent(endpoint)}`).then((r) => {
        if (r.status !== 200) {
          box.replaceChildren(h('p', { text: `The service says ${r.status}: ${r.body?.error ?? ''}` }));
          return;
        }
        const e = r.body;
        const runLink = (runId) => (runId ? h('a', { href: `#/runs/${runId}`, text: runId }) : '\u2014');
        box.replaceChildren(dl([
          ['Status', e.status ?? '\u2014'],
          ['Serving config', e.endpointConfigName ?? '\u2014'],
          ['Moving to config', e.pendingEndpointConfigName ?? '\u2014'],
          ['Failure reason', e.failureReason ?? '\u2014'],
          ['Deployment that made it', runLink(e.deploymentRunId)],
          ['Latest run on it', e.lastRunId ? h('span', {}, runLink(e.lastRunId), ` (${e.lastRunKind}, ${e.lastRunState})`) : '\u2014'],
          ['ARN', h('code', { text: e.container ?? '\u2014' })],
        ]));
      }).catch((err) => box.replaceChildren(h('p', { text: err.message })));
    }
  }

  extras.hidden = extras.childElementCount === 0;
  main.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/runs', text: '\u2190 All runs' })),
    title, headFacts, actionsBox, extras, details);
  drawDetails();
  drawActions();

  async function refresh() {
    const before = JSON.stringify(run);
    run = await get(`/api/v1/runs/${id}`);
    // Unchanged, the page is left alone (a link or text the reader is on stays as it is).
    if (JSON.stringify(run) === before) return;
    drawDetails();
    if (!dialog.open) drawActions();
  }
  return { refresh };
}
