// Pure helpers of the console: no DOM, so that `node --test` can check them.

/** The workflow states in the order a run usually passes them. */
export const STATES = [
  'Uploading', 'Submitted', 'Polling', 'Collecting', 'Cancelling', 'Done', 'Failed', 'Cancelled',
];

export const KINDS = ['training', 'automl', 'transform', 'deployment', 'teardown', 'script'];

const TERMINAL = new Set(['Done', 'Failed', 'Cancelled']);

export function isTerminal(state) {
  return TERMINAL.has(state);
}

/** A shape per state, shown beside its name, so that a state reads without colour. */
const GLYPHS = {
  Uploading: '\u2191', // ↑
  Submitted: '\u25B7', // ▷
  Polling: '\u25D4', // ◔
  Collecting: '\u2193', // ↓
  Cancelling: '\u25CC', // ◌
  Done: '\u2714', // ✔
  Failed: '\u2716', // ✖
  Cancelled: '\u2298', // ⊘
};

export function glyph(state) {
  return GLYPHS[state] ?? '\u2022';
}

/** "12 s", "3 min", "5 h", "2 d": how long ago `iso` was, as of `now` (milliseconds). */
export function age(iso, now) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '';
  const s = Math.max(0, Math.floor((now - then) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

/** An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC` (the service's times are UTC). */
export function utc(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/**
 * A `datetime-local` input's value, read as UTC (the service's times are UTC), as RFC 3339; and
 * back. Empty stays empty.
 */
export function toRfc3339(local) {
  if (!local) return '';
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

export function fromRfc3339(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 19);
}

/** The region of an ARN (`arn:aws:sagemaker:REGION:ACCOUNT:...`), or null. */
export function regionOfArn(arn) {
  if (typeof arn !== 'string') return null;
  const parts = arn.split(':');
  return parts.length >= 6 && parts[0] === 'arn' && /^[a-z0-9-]+$/.test(parts[3]) && parts[3]
    ? parts[3]
    : null;
}

const SAGEMAKER_PAGES = {
  training: 'jobs',
  automl: 'automl-jobs',
  transform: 'transform-jobs',
  script: 'processing-jobs',
  deployment: 'endpoints',
  teardown: 'endpoints',
};

/** The AWS console page of a run's resource in its region, or null when either is unknown. */
export function consoleUrl(kind, name, region) {
  const page = SAGEMAKER_PAGES[kind];
  if (!page || !name || !region) return null;
  const r = encodeURIComponent(region);
  return `https://${r}.console.aws.amazon.com/sagemaker/home?region=${r}#/${page}/${encodeURIComponent(name)}`;
}

/** The AWS console page of an `s3://bucket/key` location, or null. */
export function s3ConsoleUrl(uri, region) {
  const m = typeof uri === 'string' && /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) return null;
  const [, bucket, key] = m;
  const q = new URLSearchParams();
  if (region) q.set('region', region);
  q.set('prefix', key);
  return `https://s3.console.aws.amazon.com/s3/buckets/${encodeURIComponent(bucket)}?${q}`;
}

/**
 * The AWS names and addresses of a run (from its detail): label, value and, where the AWS console
 * has a page for it, a link in the run's region.
 */
export function awsNames(run) {
  const ctx = run.context ?? {};
  const req = run.request ?? {};
  const arn = ctx.job_arn ?? null;
  const region = regionOfArn(arn) ?? regionOfArn(req.role_arn) ?? req.region ?? null;
  const out = [];
  const endpointKinds = run.kind === 'deployment' || run.kind === 'teardown';
  const name = run.name ?? ctx.job_name ?? null;
  if (name) {
    out.push({
      label: endpointKinds ? 'Endpoint' : 'Job name',
      value: name,
      href: consoleUrl(run.kind, name, region),
    });
  }
  if (arn) out.push({ label: 'ARN', value: arn, href: null });
  if (region) out.push({ label: 'Region', value: region, href: null });
  const config = ctx.endpoint_config_name ?? req.endpoint_config_name;
  if (config) {
    out.push({
      label: 'Endpoint config',
      value: config,
      href: region
        ? `https://${region}.console.aws.amazon.com/sagemaker/home?region=${region}#/endpointConfig/${encodeURIComponent(config)}`
        : null,
    });
  }
  const outputLabel = run.kind === 'script' ? 'Output' : 'Model artifacts';
  for (const [label, uri] of [['Input', ctx.input_s3_uri], [outputLabel, ctx.model_artifacts]]) {
    if (uri) out.push({ label, value: uri, href: s3ConsoleUrl(uri, region) });
  }
  if (ctx.sagemaker_status) out.push({ label: 'SageMaker status', value: ctx.sagemaker_status, href: null });
  if (ctx.secondary_status) out.push({ label: 'Secondary status', value: ctx.secondary_status, href: null });
  return out;
}

/** What an action's answer means, in words. */
export function explainAnswer(action, status, body) {
  const error = body && typeof body.error === 'string' ? body.error : '';
  if (status === 202) {
    if (action === 'retry') {
      return `Retry accepted: the run is re-armed in ${body.state} (attempt ${body.attempt}); the engine resumes it now.`;
    }
    return `Cancel accepted: the run is ${body.state}; the engine stops its AWS work and ends it Cancelled.`;
  }
  if (status === 409) {
    return `Not possible now (409 Conflict): ${error}. The run's current state does not allow this ` +
      `${action}; nothing was changed.`;
  }
  if (status === 403) return `Refused (403): ${error}. Your token's role may not do this.`;
  if (status === 404) return `Not found (404): ${error}. The run does not exist or is not yours.`;
  if (status === 401) return 'Your token was not accepted (401); sign in again.';
  if (status >= 400 && status < 500) return `Refused (${status}): ${error}`;
  return `The service could not do this (${status}): ${error || 'no answer'}`;
}

/** The runs page's filters as found in a query string, restricted to what the API takes. */
export const FILTERS = [
  'state', 'kind', 'has_error', 'degraded', 'stuck_secs',
  'created_after', 'created_before', 'updated_after', 'updated_before', 'limit', 'cursor',
];

export function filtersFrom(params) {
  const out = {};
  for (const f of FILTERS) {
    const v = params.get(f);
    if (v !== null && v !== '') out[f] = v;
  }
  return out;
}

export function queryOf(filters) {
  const q = new URLSearchParams();
  for (const f of FILTERS) {
    if (filters[f] !== undefined && filters[f] !== null && filters[f] !== '') q.set(f, filters[f]);
  }
  return q.toString();
}

/**
 * The path a run took: its states in order, the transitions taken as "From>To" keys, and the
 * states it stayed in for a step (a poll, a retry: a self edge).
 */
export function pathOf(history) {
  const states = [];
  const edges = new Set();
  const stays = new Set();
  for (const e of history ?? []) {
    if (e.from_state && e.from_state !== e.to_state) edges.add(`${e.from_state}>${e.to_state}`);
    if (e.from_state && e.from_state === e.to_state) stays.add(e.to_state);
    if (states[states.length - 1] !== e.to_state) states.push(e.to_state);
  }
  return { states, edges, stays };
}
