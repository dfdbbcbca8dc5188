// Unit tests of the console's pure helpers (node --test, no packages).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  age, awsNames, consoleUrl, explainAnswer, filtersFrom, glyph, pathOf, queryOf, regionOfArn,
  s3ConsoleUrl, STATES, fromRfc3339, toRfc3339, utc,
} from '../../../assets/console/format.js';

test('ages read in the largest whole unit', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  assert.equal(age('2026-12-07T11:59:58.5Z', now), '1 s');
  assert.equal(age('2026-12-07T11:59:00Z', now), '1 min');
  assert.equal(age('2026-12-07T10:00:00Z', now), '2 h');
  assert.equal(age('2026-12-05T11:00:00Z', now), '2 d');
  assert.equal(age('2026-12-07T12:00:05Z', now), '0 s', 'a clock a little ahead is not negative');
  assert.equal(age('not a time', now), '');
});

test('times are shown in UTC to the second', () => {
  assert.equal(utc('2026-12-07T11:59:58.123456Z'), '2026-12-07 11:59:58 UTC');
  assert.equal(utc(null), '');
});

test('every state has its own shape, so that none needs colour', () => {
  const shapes = STATES.map(glyph);
  assert.equal(new Set(shapes).size, STATES.length);
});

test('the region comes from an ARN, not from a global one', () => {
  assert.equal(regionOfArn('arn:aws:sagemaker:eu-west-1:123456789012:training-job/x'), 'eu-west-1');
  assert.equal(regionOfArn('arn:aws:iam::123456789012:role/R'), null);
  assert.equal(regionOfArn('nonsense'), null);
  assert.equal(regionOfArn(undefined), null);
});

test('AWS console links point at the resource page of its region', () => {
  assert.equal(
    consoleUrl('training', 'job-1', 'eu-west-1'),
    'https://eu-west-1.console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/job-1',
  );
  assert.match(consoleUrl('transform', 't', 'us-east-1'), /#\/transform-jobs\/t$/);
  assert.match(consoleUrl('script', 'p', 'us-east-1'), /#\/processing-jobs\/p$/);
  assert.match(consoleUrl('automl', 'a', 'us-east-1'), /#\/automl-jobs\/a$/);
  assert.match(consoleUrl('deployment', 'e', 'us-east-1'), /#\/endpoints\/e$/);
  assert.match(consoleUrl('teardown', 'e', 'us-east-1'), /#\/endpoints\/e$/);
  assert.equal(consoleUrl('training', 'job-1', null), null, 'no region, no link');
  assert.equal(
    s3ConsoleUrl('s3://b/k/data.csv', 'us-east-1'),
    'https://s3.console.aws.amazon.com/s3/buckets/b?region=us-east-1&prefix=k%2Fdata.csv',
  );
  assert.equal(s3ConsoleUrl('https://elsewhere', 'us-east-1'), null);
});

test("a run's AWS names carry links where the region is known", () => {
  const names = awsNames({
    kind: 'training',
    name: 'essedum-train-1',
    request: {},
    context: {
      job_arn: 'arn:aws:sagemaker:us-west-2:123456789012:training-job/essedum-train-1',
      model_artifacts: 's3://out/model.tar.gz',
      sagemaker_status: 'Completed',
    },
  });
  const by = Object.fromEntries(names.map((n) => [n.label, n]));
  assert.match(by['Job name'].href, /^https:\/\/us-west-2\.console\.aws\.amazon\.com\/.*#\/jobs\/essedum-train-1$/);
  assert.equal(by.Region.value, 'us-west-2');
  assert.match(by['Model artifacts'].href, /region=us-west-2/);
  assert.equal(by['SageMaker status'].value, 'Completed');
  const endpoint = awsNames({ kind: 'deployment', name: 'ep', request: { endpoint_config_name: 'cfg' }, context: {} });
  assert.deepEqual(endpoint.map((n) => n.label), ['Endpoint', 'Endpoint config']);
  assert.equal(endpoint[0].href, null);
});

test('answers are explained in words, a 409 as a refusal that changed nothing', () => {
  assert.match(explainAnswer('retry', 202, { state: 'Submitted', attempt: 0 }), /re-armed in Submitted \(attempt 0\)/);
  const conflict = explainAnswer('retry', 409, { error: 'the run is Done; only Failed or unfinished runs can be retried' });
  assert.match(conflict, /^Not possible now \(409 Conflict\): the run is Done/);
  assert.match(conflict, /nothing was changed/);
  assert.match(explainAnswer('retry', 403, { error: 'x' }), /role may not/);
  assert.match(explainAnswer('cancel', 404, { error: 'no run' }), /not yours/);
  assert.match(explainAnswer('cancel', 503, null), /could not do this \(503\)/);
});

test('filters survive the URL and unknown parameters are dropped', () => {
  const f = filtersFrom(new URLSearchParams('state=Failed&kind=&evil=1&stuck_secs=60&cursor=abc'));
  assert.deepEqual(f, { state: 'Failed', stuck_secs: '60', cursor: 'abc' });
  assert.equal(queryOf(f), 'state=Failed&stuck_secs=60&cursor=abc');
  assert.equal(queryOf({ state: '', kind: undefined }), '');
  assert.equal(queryOf({ limit: 50, ...filtersFrom(new URLSearchParams('limit=2')) }), 'limit=2');
});

test("a run's path lists each state once per visit and the transitions taken", () => {
  const { states, edges, stays } = pathOf([
    { from_state: null, to_state: 'Uploading' },
    { from_state: 'Uploading', to_state: 'Submitted' },
    { from_state: 'Submitted', to_state: 'Submitted' },
    { from_state: 'Submitted', to_state: 'Failed' },
    { from_state: 'Failed', to_state: 'Submitted' },
  ]);
  assert.deepEqual(states, ['Uploading', 'Submitted', 'Failed', 'Submitted']);
  assert.deepEqual([...edges].sort(), ['Failed>Submitted', 'Submitted>Failed', 'Uploading>Submitted']);
  assert.deepEqual([...stays], ['Submitted'], 'a step that stayed is a self edge taken');
});

test('time filters are entered in UTC and go to the API as RFC 3339', () => {
  assert.equal(toRfc3339('2026-12-07T10:30'), '2026-12-07T10:30:00Z');
  assert.equal(toRfc3339('2026-12-07T10:30:15'), '2026-12-07T10:30:15Z');
  assert.equal(toRfc3339(''), '');
  assert.equal(fromRfc3339('2026-12-07T10:30:15Z'), '2026-12-07T10:30:15');
  assert.equal(fromRfc3339('2026-12-07T11:30:15+01:00'), '2026-12-07T10:30:15', 'shown in UTC');
  assert.equal(fromRfc3339('nonsense'), '');
  assert.equal(fromRfc3339(toRfc3339('2026-01-02T03:04:05')), '2026-01-02T03:04:05');
});
