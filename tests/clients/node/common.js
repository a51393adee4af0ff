'use strict';
// Shared helpers of the node client-conformance suites: the target from the environment, key
// names unique per run, slot arithmetic, bounded waits, and the `scenario` wrapper that gives every
// test a timeout and reports a summary of what it read back (the driver compares summaries
// between targets, so they never contain run ids, timings or stream ids).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const { isDeepStrictEqual } = require('node:util');

const target = {
  host: process.env.REDIS_HOST || '127.0.0.1',
  port: Number(process.env.REDIS_PORT || 6379),
};
// Unique per run and target, so a rerun against a long-lived server never sees old keys.
const runId = process.env.CLIENTS_RUN_ID || `${Date.now().toString(36)}-${process.pid}`;

const SLOT_COUNT = 16384;
const DEFAULT_TIMEOUT_MS = 45_000;
const MiB = 1024 * 1024;

/** Key names of one suite: `cc:<run>:<suite>:<name>` (no braces, so the whole name is hashed). */
function keyspace(suite) {
  const base = `cc:${runId}:${suite}`;
  return {
    base,
    key: (name) => `${base}:${name}`,
    /** n keys `<base>:<name>:<i>`, spread over many slots. */
    many: (name, n) => Array.from({ length: n }, (_, i) => `${base}:${name}:${i}`),
    /** A key in the slot of hash tag `{<base>:<tag>}`, for multi-key commands that need one slot. */
    tagged: (tag, name) => `{${base}:${tag}}:${name}`,
    /** Pub/sub channel names are global too: keep them per run. */
    channel: (name) => `${base}:ch:${name}`,
  };
}

function crc16Table() {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = crc & 0xffff;
  }
  return table;
}
const CRC16 = crc16Table();

/** Redis Cluster's hash slot of a key, {hashtag} rule included (keyHashSlot in cluster.c). */
function keySlot(key) {
  let data = Buffer.from(key);
  const open = data.indexOf('{');
  if (open !== -1) {
    const close = data.indexOf('}', open + 1);
    if (close > open + 1) data = data.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of data) crc = ((crc << 8) & 0xffff) ^ CRC16[((crc >> 8) ^ byte) & 0xff];
  return crc % SLOT_COUNT;
}

function distinctSlots(keys) {
  return new Set(keys.map(keySlot)).size;
}

/** Short content hash of any JSON-able value or Buffer: summaries stay small but exact. */
function digest(value) {
  const data = Buffer.isBuffer(value) ? value : JSON.stringify(value);
  return crypto.createHash('sha1').update(data).digest('hex').slice(0, 16);
}

/** A deterministic value of `size` bytes (printable, so it round-trips as a string too). */
function bigValue(size, seed) {
  const chunk = crypto.createHash('sha256').update(String(seed)).digest('base64');
  return chunk.repeat(Math.ceil(size / chunk.length)).slice(0, size);
}

/** Deterministic binary bytes (all 256 byte values, including \r\n and 0). */
function binaryValue(size, seed) {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `pred` every `intervalMs` until it returns truthy; throws after `timeoutMs`. */
async function waitFor(pred, timeoutMs, what, intervalMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await pred();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Rejects with Error(message) if `promise` is not settled within `ms` (a hung reply must fail,
 * not stall). */
function within(ms, message, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The `blocked_clients` field of INFO clients (the standalone server's and the proxy's). */
function blockedClients(infoText) {
  const match = /^blocked_clients:(\d+)/m.exec(infoText);
  assert.ok(match, `INFO clients has no blocked_clients field:\n${infoText}`);
  return Number(match[1]);
}

/** Waits (bounded) until the server reports a blocked client; `observer` is an ioredis or
 * node-redis client (both have info(section)). */
async function waitUntilBlocked(observer) {
  await waitFor(async () => blockedClients(await observer.info('clients')) >= 1, 5000,
    'the blocking command to be blocked on the server');
}

/** Drains an async iterable, failing with a clear message after more than `maxItems` items or
 * `timeoutMs` (a SCAN cursor that never returns to 0 would otherwise loop forever, possibly
 * without yielding anything); returns the items. */
async function collectBounded(iterable, { maxItems, timeoutMs }, what) {
  const iterator = iterable[Symbol.asyncIterator]();
  const deadline = Date.now() + timeoutMs;
  const items = [];
  try {
    for (;;) {
      const { value, done } = await within(Math.max(1, deadline - Date.now()),
        `${what} did not terminate within ${timeoutMs} ms (a cursor that never returns to 0?)`, iterator.next());
      if (done) return items;
      items.push(value);
      if (items.length > maxItems) {
        throw new Error(`${what} did not terminate: more than ${maxItems} items `
          + '(a cursor that never returns to 0?)');
      }
    }
  } finally {
    // Stop the iterator's loop if we gave up (closing the client also rejects a pending SCAN).
    if (iterator.return) iterator.return().catch(() => {});
  }
}

/** Asserts that `keys` (with possible SCAN duplicates) are exactly the set `expected`. */
function assertSameKeySet(keys, expected, what) {
  const got = new Set(keys);
  const missing = expected.filter((k) => !got.has(k));
  const want = new Set(expected);
  const extra = [...got].filter((k) => !want.has(k));
  assert.deepEqual(
    { missing: missing.slice(0, 5), extra: extra.slice(0, 5), missingCount: missing.length, extraCount: extra.length },
    { missing: [], extra: [], missingCount: 0, extraCount: 0 }, `${what}: key set differs`);
}

/** Lua that spins, read-only, for `seconds` (an argument expression) and returns 'finished':
 * the long-running script an operator stops with SCRIPT KILL / FUNCTION KILL. */
function spinLua(seconds) {
  return "local start = redis.call('TIME')\nwhile true do\n"
    + `  if redis.call('TIME')[1] - start[1] >= tonumber(${seconds}) then return 'finished' end\nend`;
}

/** A FUNCTION library `name` with one function `<name>_spin` (1 key, the seconds as argument). */
function spinLibrary(name) {
  return `#!lua name=${name}\nredis.register_function{function_name='${name}_spin', `
    + `callback=function(keys, args)\n${spinLua('args[1]')}\nend, flags={'no-writes'}}`;
}

/** A Lua library name (letters, digits, _) unique per run and suite. */
const libraryName = (base) => base.replace(/[^A-Za-z0-9]/g, '_');

/** Sends `kill` (SCRIPT KILL / FUNCTION KILL) until the server has a script to kill: NOTBUSY
 * means it has not started yet. Returns the reply; bounded in time. */
async function killWhenBusy(kill, what) {
  return waitFor(async () => {
    try {
      return await kill();
    } catch (error) {
      if (/NOTBUSY/.test(error.message)) return null;
      throw error;
    }
  }, 8000, `${what} to find the running script`, 50);
}

/** Runs `start()` (a long script), kills it with `kill()` from another client, and returns the
 * error the script's caller got. */
async function runAndKill(start, kill, what) {
  const started = Date.now();
  const running = start().then((reply) => assert.fail(`${what}: the script was not killed: ${reply}`), (e) => e);
  running.catch(() => {}); // awaited below; no unhandled rejection if the kill fails first
  assert.equal(await killWhenBusy(kill, what), 'OK');
  const error = await within(10_000, `${what}: the killed script's caller got no reply within 10 s`, running);
  assert.ok(Date.now() - started < 9000, `${what}: stopped by the kill, not by finishing`);
  return error;
}

/** Compares long lists and reports the first difference only (a full diff of 10k items is noise). */
function assertListEqual(actual, expected, what) {
  assert.ok(Array.isArray(actual), `${what}: not a list: ${JSON.stringify(actual)?.slice(0, 200)}`);
  const length = Math.max(actual.length, expected.length);
  for (let i = 0; i < length; i++) {
    if (!isDeepStrictEqual(actual[i], expected[i])) {
      assert.fail(`${what}: item ${i} of ${actual.length} (expected ${expected.length}) is `
        + `${JSON.stringify(actual[i])?.slice(0, 200)}, expected ${JSON.stringify(expected[i])?.slice(0, 200)}`);
    }
  }
}

/**
 * Defines one node:test test with a timeout. `fn(t)` returns a summary of what it read back
 * (required: every scenario asserts real results); it is reported as a diagnostic line
 * `summary {"name":..., "summary":...}` that the JSON reporter picks up.
 */
function scenario(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  test(name, { timeout }, async (t) => {
    const summary = await fn(t);
    assert.notEqual(summary, undefined, `scenario '${name}' returned no summary`);
    t.diagnostic(`summary ${JSON.stringify({ name, summary })}`);
  });
}

module.exports = {
  assert, target, runId, keyspace, keySlot, distinctSlots, digest, bigValue, binaryValue, sleep,
  waitFor, within, waitUntilBlocked, collectBounded, assertSameKeySet, assertListEqual, scenario,
  MiB, spinLua, spinLibrary, libraryName, runAndKill,
};
