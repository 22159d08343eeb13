// kdindex from a real client: node-postgres (pg) and pgvector's npm package.
//
// Connects with the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE) that
// test/scripts/test.sh exports, to a database of its own.  On real[] columns
// node-postgres sends a JS array as an array literal '{1,2,3}' and parses real[]
// results back into arrays; on pgvector's vector columns (only where pgvector is
// installed) values go through pgvector's toSql / fromSql / registerTypes.  Every
// kNN query runs as a named (prepared) statement under custom and generic plans,
// and its top rows are checked against an exact computation here.
//
//   npm ci && node --test --test-reporter=tap kdindex.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import pgvector from 'pgvector';
import pgvectorPg from 'pgvector/pg';

const DIM = 16;
const ROWS = 1000;   // above 256 codewords: CREATE INDEX trains PQ codes
const K = 5;
const QUERIES = 6;

const METRICS = {
  l2: { op: '<->', dist: (a, b) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0)) },
  ip: { op: '<#>', dist: (a, b) => -dot(a, b) },
  cosine: { op: '<=>', dist: (a, b) => 1 - dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b)) },
  l1: { op: '<+>', dist: (a, b) => a.reduce((s, x, i) => s + Math.abs(x - b[i]), 0) },
};

function dot(a, b) {
  return a.reduce((s, x, i) => s + x * b[i], 0);
}

// mulberry32: the same rows on every machine
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// 20 clusters with noise, so that the codebooks have structure to learn
const rand = rng(42);
const centers = Array.from({ length: 20 }, () => Array.from({ length: DIM }, () => rand() * 4 - 2));
const rows = Array.from({ length: ROWS }, (_, i) =>
  centers[i % centers.length].map((c) => c + (rand() - 0.5) * 0.6));
const queries = Array.from({ length: QUERIES }, () => Array.from({ length: DIM }, () => rand() * 4 - 2));
// what a real column holds, and what the exact distances are computed on
const stored = rows.map((r) => r.map(Math.fround));

function exactTop(metric, q) {
  const qf = q.map(Math.fround);
  return stored.map((r, id) => ({ id, d: METRICS[metric].dist(r, qf) }))
    .sort((x, y) => x.d - y.d).slice(0, K);
}

const client = new pg.Client();
await client.connect();

async function scalar(sql, params = []) {
  const res = await client.query(sql, params);
  return Object.values(res.rows[0])[0];
}

const hasVector = Number(await scalar(
  "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")) > 0;

await client.query('CREATE EXTENSION IF NOT EXISTS kdindex');
await client.query('DROP TABLE IF EXISTS items, vitems');
// the planner would pick a sequential scan and a sort on 1,000 rows
await client.query('SET enable_seqscan = off');
// re-rank every row: the answer is then exact, not approximate
await client.query(`SET kdindex.rerank = ${ROWS}`);

// idx_scan of an index, with this backend's counts flushed first
async function indexScans(index) {
  await client.query('SELECT pg_stat_force_next_flush()');
  return Number(await scalar(
    'SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1', [index]));
}

// Build USING kdindex with OPCLASS, check the planner uses it, then run the kNN
// query as a named statement (custom and generic plans) for every query vector
// and compare its top K with the exact one.  toParam turns a JS array into the
// statement's parameter.
async function checkOpclass(table, opclass, metric, toParam) {
  const index = `${table}_${metric}`;
  const { op } = METRICS[metric];
  await client.query(`CREATE INDEX ${index} ON ${table} USING kdindex (embedding ${opclass}) WITH (m = 8)`);
  assert.equal(await scalar('SELECT trained FROM kdindex_info($1)', [index]), true);

  const sql = `SELECT id, embedding ${op} $1 AS d FROM ${table} ORDER BY embedding ${op} $1 LIMIT ${K}`;
  const plan = (await client.query(`EXPLAIN (COSTS OFF) ${sql}`, [toParam(queries[0])]))
    .rows.map((r) => r['QUERY PLAN']).join('\n');
  assert.match(plan, new RegExp(`Index Scan using ${index}`), plan);

  const before = await indexScans(index);
  let runs = 0;
  for (const mode of ['force_custom_plan', 'force_generic_plan']) {
    await client.query(`SET plan_cache_mode = ${mode}`);
    for (const q of queries) {
      // one named statement, prepared once: plan_cache_mode applies at each run
      const res = await client.query({ name: `knn_${index}`, text: sql, values: [toParam(q)] });
      const want = exactTop(metric, q);
      assert.deepEqual(res.rows.map((r) => r.id), want.map((w) => w.id), `${mode}, top ${K} ids`);
      res.rows.forEach((r, i) => assert.ok(Math.abs(r.d - want[i].d) <= 1e-5 * (1 + Math.abs(want[i].d)),
        `${mode}, distance ${r.d} against exact ${want[i].d}`));
      runs++;
    }
  }
  await client.query('RESET plan_cache_mode');
  assert.equal(await indexScans(index) - before, runs, 'every prepared run scanned the index');
}

await test('real[]: node-postgres sends JS arrays as array literals and reads real[] back as arrays', async () => {
  assert.equal(await scalar('SELECT $1::real[]::text', [[1, 2.5, -3]]), '{1,2.5,-3}');
  await client.query('CREATE TABLE items (id int PRIMARY KEY, embedding real[])');
  for (const [id, r] of rows.entries()) {
    await client.query({ name: 'insert_item', text: 'INSERT INTO items VALUES ($1, $2)', values: [id, r] });
  }
  const back = await client.query('SELECT id, embedding FROM items WHERE id IN (0, 1, 999) ORDER BY id');
  for (const r of back.rows) {
    // real's output is the shortest text that reads back as the same float4
    assert.deepEqual(r.embedding.map(Math.fround), stored[r.id]);
  }
});

for (const metric of Object.keys(METRICS)) {
  await test(`real[]: float4_${metric}_ops, ORDER BY ${METRICS[metric].op} as a prepared statement`, () =>
    checkOpclass('items', `float4_${metric}_ops`, metric, (q) => q));
}

await test("real[]: pgvector's text format '[1,2,3]' is not an array literal", async () => {
  const malformed = { code: '22P02', message: /malformed array literal: "\[1,2,3\]"/ };
  await assert.rejects(client.query('SELECT $1::real[]', ['[1,2,3]']), malformed);
  assert.equal(pgvector.toSql([1, 2, 3]), '[1,2,3]');
  await assert.rejects(client.query('SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1',
    [pgvector.toSql(queries[0])]), { code: '22P02', message: /malformed array literal/ });
  // what works for real[]: a JS array, or the array literal in braces
  assert.equal(await scalar('SELECT $1::real[]::text', [[1, 2, 3]]), '{1,2,3}');
  assert.equal(await scalar('SELECT $1::real[]::text', ['{1,2,3}']), '{1,2,3}');
  const top = exactTop('l2', queries[0])[0].id;
  const text = '{' + queries[0].join(',') + '}';
  assert.equal(await scalar('SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 1', [text]), top);
});

const noVector = hasVector ? false : 'pgvector is not installed here (no vector extension): vector part skipped';

await test('vector: pgvector.toSql inserts, registerTypes reads vectors back as arrays', { skip: noVector }, async (t) => {
  await client.query('CREATE EXTENSION IF NOT EXISTS vector');
  // kdindex's vector opclasses: the kdindex_vector extension where it exists,
  // else kdindex_enable_pgvector() (kdindex 0.2.0)
  const split = Number(await scalar(
    "SELECT count(*) FROM pg_available_extensions WHERE name = 'kdindex_vector'")) > 0;
  if (split) {
    await client.query('CREATE EXTENSION IF NOT EXISTS kdindex_vector');
  } else {
    await client.query('SELECT kdindex_enable_pgvector()');
  }
  t.diagnostic(`vector opclasses from ${split ? 'CREATE EXTENSION kdindex_vector' : 'kdindex_enable_pgvector()'}`);
  await pgvectorPg.registerTypes(client);

  assert.deepEqual(pgvector.fromSql('[1,2.5,-3]'), [1, 2.5, -3]);
  await client.query(`CREATE TABLE vitems (id int PRIMARY KEY, embedding vector(${DIM}))`);
  for (const [id, r] of rows.entries()) {
    await client.query({ name: 'insert_vitem', text: 'INSERT INTO vitems VALUES ($1, $2)',
      values: [id, pgvectorPg.toSql(r)] });
  }
  const back = await client.query('SELECT id, embedding FROM vitems WHERE id IN (0, 1, 999) ORDER BY id');
  for (const r of back.rows) {
    // the same for vector's output
    assert.deepEqual(r.embedding.map(Math.fround), stored[r.id]);
  }
});

for (const metric of Object.keys(METRICS)) {
  await test(`vector: vector_${metric}_ops, ORDER BY ${METRICS[metric].op} with pgvector.toSql as a prepared statement`,
    { skip: noVector }, () => checkOpclass('vitems', `vector_${metric}_ops`, metric, pgvectorPg.toSql));
}

await client.end();
