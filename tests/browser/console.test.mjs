// The operator console end to end in headless Chromium (Debian's chromium, driven by
// playwright-core), against the real service and the AWS emulator. tests/console.rs starts both,
// prepares a run that failed on our side, and runs this script with:
//   CONSOLE_URL        the service's base URL (http://127.0.0.1:PORT)
//   OPERATOR_TOKEN     a token of the operator role
//   SUBMITTER_TOKEN    a token of the submitter role
//   TRAINING_BODY      a valid training request (JSON) whose HyperParameters carry the emulator's
//                      knobs (_emulator_outcome, _emulator_polls)
//   FAILED_RUN         the id of the Failed run to retry
//   DEPLOY_RUN         the id of a deployment run that put an endpoint into service
//   SCRIPT_RUN         the id of a script job that ended Done with a log and an output artifact
//   STORAGE_SECRET     a secret in that job's request, which no page may show
//   SCREENSHOTS        the directory for screenshots
// It exits 0 when every scenario passed; its last line is `RESULT {json}` (the runs it made), so
// that the Rust test can check their end in the API.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (tests/console.rs sets it)`);
  return v;
};
const BASE = env('CONSOLE_URL');
const OPERATOR = env('OPERATOR_TOKEN');
const SUBMITTER = env('SUBMITTER_TOKEN');
const BODY = JSON.parse(env('TRAINING_BODY'));
const FAILED_RUN = env('FAILED_RUN');
const DEPLOY_RUN = env('DEPLOY_RUN');
const SCRIPT_RUN = env('SCRIPT_RUN');
const STORAGE_SECRET = env('STORAGE_SECRET');
const SHOTS = env('SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ORIGIN = new URL(BASE).origin;
const WAIT = 45_000;

mkdirSync(SHOTS, { recursive: true });

function step(text) {
  console.log(`step: ${text}`);
}

/** Submits a training run through the Essedum route, as the holder of `token`. */
async function submit(token, outcome, polls) {
  const body = structuredClone(BODY);
  body.HyperParameters._emulator_outcome = outcome;
  body.HyperParameters._emulator_polls = String(polls);
  const r = await fetch(`${BASE}/api/service/v1/pipelines/training/train`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  assert.ok(r.status >= 200 && r.status < 300, `submit: ${r.status} ${JSON.stringify(j)}`);
  return j.id;
}

async function apiRun(id) {
  const r = await fetch(`${BASE}/api/v1/runs/${id}`, { headers: { Authorization: `Bearer ${OPERATOR}` } });
  assert.equal(r.status, 200);
  return r.json();
}

/** Polls `check` (an API read) until it holds, for at most WAIT. */
async function until(check, what) {
  const deadline = Date.now() + WAIT;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => { setTimeout(resolve, 50); });
  }
}

/** Every request the page makes, to prove none leaves the service's origin. */
function watchRequests(page, seen) {
  page.on('request', (r) => seen.push(r.url()));
  page.on('pageerror', (e) => {
    console.error(`page error: ${e.message}`);
    seen.push(`pageerror:${e.message}`);
  });
}

async function signIn(page, token, role) {
  await page.goto(`${BASE}/ui`);
  await page.locator('#token').waitFor({ timeout: WAIT });
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await page.locator('#who').filter({ hasText: `role: ${role}` }).waitFor({ timeout: WAIT });
}

/** The state a run's row shows in the runs table, or null when the row is absent. */
function rowState(page, id) {
  return page.evaluate((runId) => document.querySelector(`tr[data-run="${runId}"]`)?.dataset.state ?? null, id);
}

async function waitRowState(page, id, pred, what) {
  await page.waitForFunction(
    ([runId, states]) => states.includes(document.querySelector(`tr[data-run="${runId}"]`)?.dataset.state),
    [id, pred],
    { timeout: WAIT, polling: 100 },
  ).catch((e) => { throw new Error(`run ${id}: never ${what}: ${e.message}`); });
}

async function waitRunPageState(page, state) {
  await page.locator(`.run-head [data-state="${state}"]`).waitFor({ timeout: WAIT });
}

const made = {};
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const requests = [];
try {
  // ---- The operator ---------------------------------------------------------------------------
  const operator = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await operator.newPage();
  watchRequests(page, requests);

  step('the console is served under its Content-Security-Policy and asks for a token');
  const first = await page.goto(`${BASE}/ui`);
  assert.equal(first.status(), 200);
  assert.match(first.headers()['content-security-policy'], /script-src 'self'/);
  await page.locator('#token').waitFor({ timeout: WAIT });
  await page.screenshot({ path: join(SHOTS, 'sign-in.png') });

  step('a wrong token is refused and the page asks again');
  await page.fill('#token', 'not-a-token-of-this-service');
  await page.press('#token', 'Enter');
  await page.locator('.sign-in-note', { hasText: 'did not accept' }).waitFor({ timeout: WAIT });

  step('an operator token signs in and the role is shown');
  await page.fill('#token', OPERATOR);
  await page.press('#token', 'Enter');
  await page.locator('#who').filter({ hasText: 'role: operator' }).waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.length), 1, 'the token is in sessionStorage');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie');

  step('a new run appears without a reload and reaches Done');
  await page.evaluate(() => { window.consoleTestMarker = 'same page'; });
  made.live = await submit(OPERATOR, 'Completed', 30);
  await waitRowState(page, made.live, ['Uploading', 'Submitted', 'Polling', 'Collecting'], 'shown unfinished');
  await page.screenshot({ path: join(SHOTS, 'runs-live.png') });
  await waitRowState(page, made.live, ['Done'], 'shown Done');
  assert.equal(await page.evaluate(() => window.consoleTestMarker), 'same page', 'the page was not reloaded');
  const doneCount = Number(await page.locator('[data-count-state="Done"] .count').textContent());
  assert.ok(doneCount >= 1, `the summary bar counts Done runs: ${doneCount}`);

  step('filtering to Failed shows the failed run and only Failed runs');
  await page.click('[data-count-state="Failed"]');
  await page.waitForFunction(() => window.location.hash.includes('state=Failed'));
  await page.locator(`tr[data-run="${FAILED_RUN}"]`).waitFor({ timeout: WAIT });
  const states = await page.$$eval('tr[data-run]', (rows) => rows.map((r) => r.dataset.state));
  assert.ok(states.length >= 1 && states.every((s) => s === 'Failed'), `only Failed rows: ${states}`);
  assert.equal(await rowState(page, made.live), null, 'the Done run is filtered out');
  await page.screenshot({ path: join(SHOTS, 'runs-failed.png') });

  step('the unit tests\' workflow fixture is what the service serves');
  {
    const r = await fetch(`${BASE}/api/v1/workflows`, { headers: { Authorization: `Bearer ${OPERATOR}` } });
    assert.equal(r.status, 200);
    const served = (await r.json()).map((w) => ({
      kind: w.kind,
      initial: w.initial,
      states: w.states.map((st) => ({ name: st.name, terminal: st.terminal })),
      edges: w.edges.map((e) => ({ from: e.from, to: e.to })),
    })).sort((a, b) => a.kind.localeCompare(b.kind));
    const fixture = new URL('unit/fixtures/workflows.json', import.meta.url);
    // CONSOLE_WRITE_FIXTURE=1 rewrites it from the service (after a workflow changed).
    if (process.env.CONSOLE_WRITE_FIXTURE === '1') writeFileSync(fixture, `${JSON.stringify(served, null, 1)}\n`);
    assert.deepEqual(JSON.parse(readFileSync(fixture, 'utf8')), served,
      'tests/browser/unit/fixtures/workflows.json is out of date: run with CONSOLE_WRITE_FIXTURE=1');
  }

  step('the failed run shows its error, its history and its workflow diagram');
  await page.click(`tr[data-run="${FAILED_RUN}"] a`);
  await waitRunPageState(page, 'Failed');
  assert.match(await page.title(), /^Failed · essedum-train-/, 'the tab names the run and its state');
  const error = await page.locator('.last-error').textContent();
  assert.match(error, /gave up/, `the error is shown: ${error}`);
  assert.ok(await page.locator('.timeline .event.has-error').count() >= 1, 'the timeline shows the error');
  assert.equal(await page.locator('svg.diagram .node.current').getAttribute('data-state'), 'Failed');
  assert.ok(await page.locator('svg.diagram .edge.taken').count() >= 1, 'the path taken is drawn');
  await page.screenshot({ path: join(SHOTS, 'run-failed.png'), fullPage: true });

  step('retry, with a reason, by keyboard alone, confirmed, then the run reaches Done');
  await page.fill('#reason', 'the outage is over');
  await page.focus('#reason');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'action-retry', 'Tab reaches Retry');
  await page.keyboard.press('Enter');
  await page.locator('dialog.confirm[open]').waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'confirm-no', 'the safe answer has focus');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'confirm-yes');
  await page.keyboard.press('Enter');
  await page.locator('.answer', { hasText: 'Retry accepted' }).waitFor({ timeout: WAIT });
  await waitRunPageState(page, 'Done');
  assert.ok(
    await page.locator('.timeline .detail', { hasText: 'retry requested by operator: the outage is over' }).count() === 1,
    'the history records the retry and its reason',
  );
  assert.equal(
    await page.locator('svg.diagram .edge.taken.extra[data-edge="Failed>Submitted"]').count(), 1,
    'the diagram shows the retry the run took',
  );
  await page.screenshot({ path: join(SHOTS, 'run-retried-done.png'), fullPage: true });
  await page.locator('section.diagram-box').screenshot({ path: join(SHOTS, 'diagram-retried.png') });

  step('cancel a running run, confirmed, and it ends Cancelled');
  made.cancelled = await submit(OPERATOR, 'Completed', 100000);
  await page.goto(`${BASE}/ui#/runs/${made.cancelled}`);
  await waitRunPageState(page, 'Polling');
  await page.fill('#reason', 'wrong data set');
  await page.click('#action-cancel');
  await page.locator('dialog.confirm[open]').waitFor({ timeout: WAIT });
  await page.click('#confirm-yes');
  await page.locator('.answer', { hasText: 'Cancel accepted' }).waitFor({ timeout: WAIT });
  await waitRunPageState(page, 'Cancelled');
  assert.equal(await page.locator('#action-retry').count(), 0, 'a Cancelled run offers no retry');
  await page.screenshot({ path: join(SHOTS, 'run-cancelled.png'), fullPage: true });

  step("a deployment's page shows its endpoint as the service reports it, and its AWS console link");
  await page.goto(`${BASE}/ui#/runs/${DEPLOY_RUN}`);
  await waitRunPageState(page, 'Done');
  const endpointFacts = page.locator('.extras .facts');
  await endpointFacts.filter({ hasText: 'InService' }).waitFor({ timeout: WAIT });
  assert.equal(
    await endpointFacts.locator(`a[href="#/runs/${DEPLOY_RUN}"]`).count(), 2,
    'the deployment that made the endpoint, and the latest run on it, link to this run',
  );
  const awsLink = await page.locator('a.aws-link').first().getAttribute('href');
  assert.match(awsLink, /^https:\/\/us-east-1\.console\.aws\.amazon\.com\/sagemaker\/home\?region=us-east-1#\/endpoints\/.+-ep$/);
  await page.screenshot({ path: join(SHOTS, 'run-deployment.png'), fullPage: true });

  step("a script job's page shows its log and output artifacts, and never its request's secret");
  await page.goto(`${BASE}/ui#/runs/${SCRIPT_RUN}`);
  await waitRunPageState(page, 'Done');
  await page.click('button:has-text("Show log")');
  await page.locator('#script-output', { hasText: 'epoch 2' }).waitFor({ timeout: WAIT });
  await page.click('button:has-text("Show output artifacts")');
  await page.locator('#script-output', { hasText: '"accuracy": 0.91' }).waitFor({ timeout: WAIT });
  const shown = await page.evaluate(() => document.body.innerText);
  assert.ok(!shown.includes(STORAGE_SECRET), 'the storage secret is not on the page');
  assert.match(shown, /"input_artifacts"|"storage"/, 'the request is shown');
  await page.screenshot({ path: join(SHOTS, 'run-script.png'), fullPage: true });

  step('the runs page lists every run of the operator, newest first');
  await page.click('a.crumbs-all, .crumbs a');
  await page.locator(`tr[data-run="${made.cancelled}"][data-state="Cancelled"]`).waitFor({ timeout: WAIT });
  const listed = await page.$$eval('tr[data-run]', (rows) => rows.map((r) => r.dataset.run));
  for (const id of [made.live, made.cancelled, FAILED_RUN, DEPLOY_RUN, SCRIPT_RUN]) assert.ok(listed.includes(id), id);
  assert.deepEqual(listed, [...listed].sort().reverse(), 'newest first (run ids are time-ordered)');
  await page.click('.filter-box > summary');
  await page.locator('#f-stuck_secs').waitFor({ timeout: WAIT });
  await page.screenshot({ path: join(SHOTS, 'runs.png') });

  step('a time filter goes to the API in UTC');
  await page.fill('#f-created_after', '2000-01-01T00:00:00');
  await page.click('.filters button[type="submit"]');
  await page.waitForFunction(() => window.location.hash.includes('created_after=2000-01-01T00%3A00%3A00Z'));
  await page.locator(`tr[data-run="${made.live}"]`).waitFor({ timeout: WAIT });
  await page.fill('#f-created_after', '2999-01-01T00:00:00');
  await page.click('.filters button[type="submit"]');
  await page.locator('.empty:not([hidden])').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('tr[data-run]').count(), 0, 'nothing created after 2999');
  await page.click('#clear-filters');
  await page.locator(`tr[data-run="${made.live}"]`).waitFor({ timeout: WAIT });

  step('cursor paging walks the list, older pages after newer, and back to the newest');
  await page.goto(`${BASE}/ui#/runs?limit=2`);
  await page.locator('tr[data-run]').first().waitFor({ timeout: WAIT });
  const pages = [await page.$$eval('tr[data-run]', (rows) => rows.map((r) => r.dataset.run))];
  assert.equal(pages[0].length, 2);
  while (await page.locator('a[rel="next"]').count()) {
    const seen = pages.flat();
    await page.click('a[rel="next"]');
    await page.waitForFunction(
      (old) => [...document.querySelectorAll('tr[data-run]')].some((r) => !old.includes(r.dataset.run)),
      seen, { timeout: WAIT },
    );
    pages.push(await page.$$eval('tr[data-run]', (rows) => rows.map((r) => r.dataset.run)));
  }
  assert.deepEqual(pages.flat(), listed, 'the pages together are the whole list, in order');
  await page.click('.pager a:has-text("Newest")');
  await page.waitForFunction(() => !window.location.hash.includes('cursor='));
  await page.locator(`tr[data-run="${pages[0][0]}"]`).waitFor({ timeout: WAIT });
  await page.goto(`${BASE}/ui#/runs`);
  await page.locator(`tr[data-run="${made.live}"]`).waitFor({ timeout: WAIT });

  step('the live refresh leaves the keyboard focus where it is');
  await page.focus(`tr[data-run="${made.live}"] a`);
  await page.evaluate(() => { document.activeElement.consoleTestMark = true; });
  const liveText = await page.locator('#live').textContent();
  await page.waitForFunction((t) => document.getElementById('live').textContent !== t, liveText, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.consoleTestMark), true, 'focus kept across a refresh');

  step('the filter form narrows the list to a kind');
  if (!(await page.locator('.filter-box').evaluate((d) => d.open))) await page.click('.filter-box > summary');
  await page.selectOption('#f-kind', 'deployment');
  await page.click('.filters button[type="submit"]');
  await page.waitForFunction(() => window.location.hash.includes('kind=deployment'));
  await page.locator(`tr[data-run="${DEPLOY_RUN}"]`).waitFor({ timeout: WAIT });
  const kinds = await page.$$eval('tr[data-run] td[data-label="Kind"]', (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(kinds, ['deployment'], `only the deployment: ${kinds}`);

  step('sign out forgets the token');
  await page.click('#sign-out');
  await page.locator('#token').waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the token is gone');
  await operator.close();

  // ---- A submitter ----------------------------------------------------------------------------
  step('a submitter sees only its own runs, and no retry');
  made.submitters = await submit(SUBMITTER, 'Completed', 100000);
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const sp = await phone.newPage();
  watchRequests(sp, requests);
  await signIn(sp, SUBMITTER, 'submitter');
  await sp.locator(`tr[data-run="${made.submitters}"]`).waitFor({ timeout: WAIT });
  const ids = await sp.$$eval('tr[data-run]', (rows) => rows.map((r) => r.dataset.run));
  assert.deepEqual(ids, [made.submitters], 'only the submitter\'s run is listed');
  const total = Number(await sp.locator('[data-count-state="all"] .count').textContent());
  assert.equal(total, 1, 'the counts are the submitter\'s only');
  await sp.screenshot({ path: join(SHOTS, 'runs-submitter-phone.png'), fullPage: true });
  await sp.click(`tr[data-run="${made.submitters}"] a`);
  await waitRunPageState(sp, 'Polling');
  assert.equal(await sp.locator('#action-cancel').count(), 1, 'a submitter may cancel its run');
  assert.equal(await sp.locator('#action-retry').count(), 0, 'a submitter has no retry');
  await sp.screenshot({ path: join(SHOTS, 'run-submitter-phone.png') });

  step('at phone width the diagram shrinks no further than 4/5 of its size and scrolls sideways');
  const fit = await sp.locator('.diagram-scroll').evaluate((box) => {
    const svg = box.querySelector('svg.diagram');
    return {
      drawn: svg.getBoundingClientRect().width,
      natural: Number(svg.getAttribute('width')),
      scrolls: box.scrollWidth > box.clientWidth,
      page: document.documentElement.scrollWidth <= window.innerWidth,
    };
  });
  assert.ok(fit.drawn >= Math.round(fit.natural * 0.8) - 1, `drawn ${fit.drawn} of ${fit.natural}`);
  assert.ok(fit.scrolls, 'the diagram\'s box scrolls sideways');
  assert.ok(fit.page, 'the page itself does not scroll sideways');
  await sp.locator('.diagram-scroll').scrollIntoViewIfNeeded();
  await sp.locator('section.diagram-box').screenshot({ path: join(SHOTS, 'run-diagram-phone.png') });

  step('a hidden tab stops refreshing; a cancel of a run that ended meanwhile is a 409 in words');
  const detailPath = `/api/v1/runs/${made.submitters}`;
  const reads = () => requests.filter((u) => new URL(u).pathname === detailPath).length;
  await sp.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await sp.locator('#live', { hasText: 'Paused' }).waitFor({ timeout: WAIT });
  const readsWhileHidden = reads();
  const cancel = await fetch(`${BASE}/api/v1/runs/${made.submitters}/cancel`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${OPERATOR}`, 'Content-Type': 'application/json' },
    body: '{}',
  });
  assert.equal(cancel.status, 202);
  await until(async () => (await apiRun(made.submitters)).state === 'Cancelled', 'the run is Cancelled');
  assert.equal(reads(), readsWhileHidden, 'no refresh while the tab is hidden');
  await sp.locator('.run-head [data-state="Polling"]').waitFor({ timeout: WAIT });
  await sp.click('#action-cancel');
  await sp.click('#confirm-yes');
  const conflict = await sp.locator('.answer[data-status="409"]').textContent({ timeout: WAIT });
  assert.match(conflict, /^Not possible now \(409 Conflict\): the run is already Cancelled.*nothing was changed/);
  await waitRunPageState(sp, 'Cancelled');
  await sp.screenshot({ path: join(SHOTS, 'run-conflict-phone.png'), fullPage: true });
  step("another's run is not found for a submitter");
  await sp.goto(`${BASE}/ui#/runs/${FAILED_RUN}`);
  await sp.locator('.error-banner', { hasText: '404' }).waitFor({ timeout: WAIT });
  await phone.close();

  step('no request left the service\'s origin');
  const outside = requests.filter((u) => !u.startsWith(`${ORIGIN}/`));
  assert.deepEqual(outside, [], 'requests to another origin or page errors');
  assert.ok(requests.length > 10, `requests were watched: ${requests.length}`);
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(made)}`);
