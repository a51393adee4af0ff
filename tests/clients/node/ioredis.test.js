'use strict';
// ioredis 5 against one target (REDIS_HOST/REDIS_PORT): what applications do with it, at real
// sizes. Every scenario uses its own connections, closed (pending commands rejected) when the
// scenario ends, so a hung reply fails one scenario and not the ones after it.

const Redis = require('ioredis');
const crypto = require('node:crypto');
const {
  assert, target, keyspace, distinctSlots, digest, bigValue, binaryValue, waitFor, within,
  waitUntilBlocked, collectBounded, assertSameKeySet, assertListEqual, scenario, MiB,
  spinLua, spinLibrary, libraryName, runAndKill,
} = require('./common');

const ks = keyspace('ioredis');
const COMMAND_TIMEOUT_MS = 30_000;

/** A connected client that fails fast instead of reconnecting; closed when `t` ends. */
async function connect(t, options = {}) {
  const client = new Redis({
    host: target.host, port: target.port, lazyConnect: true, connectTimeout: 5000,
    commandTimeout: COMMAND_TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null,
    ...options,
  });
  client.on('error', () => {}); // errors reach the awaiting command; keep them off the console
  t.after(() => client.disconnect());
  await client.connect();
  return client;
}

/** Pipeline replies are [error, value] pairs: assert no error, return the values. */
function pipelineValues(replies) {
  const failed = replies.findIndex(([error]) => error);
  assert.equal(failed, -1, failed === -1 ? '' : `reply ${failed} is an error: ${replies[failed][0]}`);
  return replies.map(([, value]) => value);
}

// ---- connecting ------------------------------------------------------------------------------

scenario('connection options: client name and database 0', async (t) => {
  const client = await connect(t, { connectionName: 'cc-ioredis', db: 0 });
  assert.equal(await client.client('GETNAME'), 'cc-ioredis');
  assert.equal(await client.set(ks.key('connect'), 'named'), 'OK');
  assert.equal(await client.get(ks.key('connect')), 'named');
  return { name: 'cc-ioredis' };
});

// ---- pipelines and multi-key commands ---------------------------------------------------------

scenario('pipeline of 12000 commands across slots', async (t) => {
  const client = await connect(t);
  const keys = ks.many('pipe', 5000);
  const counter = ks.key('pipe:counter');
  const pipeline = client.pipeline();
  keys.forEach((key, i) => pipeline.set(key, `value-${i}`));
  keys.forEach((key) => pipeline.get(key));
  for (let i = 0; i < 2000; i++) pipeline.incrby(counter, i % 7);
  const values = pipelineValues(await pipeline.exec());

  assert.equal(values.length, 12000);
  assert.ok(values.slice(0, 5000).every((v) => v === 'OK'));
  assertListEqual(values.slice(5000, 10000), keys.map((_, i) => `value-${i}`), 'GET replies');
  const expectedCounter = Array.from({ length: 2000 }, (_, i) => i % 7).reduce((a, b) => a + b, 0);
  assert.equal(values[11999], expectedCounter);
  return { commands: values.length, slots: distinctSlots(keys) > 3000, counter: expectedCounter,
    reads: digest(values.slice(5000, 10000)) };
});

for (const count of [255, 256, 3000]) {
  scenario(`MSET/MGET/EXISTS/DEL of ${count} keys across slots`, async (t) => {
    const client = await connect(t);
    const keys = ks.many(`multi${count}`, count);
    const missing = ks.key(`multi${count}:missing`);
    assert.ok(distinctSlots(keys) > count / 2, 'keys must spread over many slots');

    assert.equal(await client.mset(Object.fromEntries(keys.map((k, i) => [k, `v${i}`]))), 'OK');
    const half = Math.floor(count / 2); // a missing key in the middle reads as null
    const probe = [...keys.slice(0, half), missing, ...keys.slice(half)];
    const expected = [...keys.slice(0, half).map((_, i) => `v${i}`), null,
      ...keys.slice(half).map((_, i) => `v${i + half}`)];
    assertListEqual(await client.mget(probe), expected, 'MGET');
    assert.equal(await client.exists(...probe), count);
    assert.equal(await client.del(...probe), count);
    assertListEqual(await client.mget(keys), keys.map(() => null), 'MGET after DEL');
    return { count, read: digest(expected), deleted: count };
  });
}

scenario('auto-pipelining: 11000 concurrent calls', async (t) => {
  const client = await connect(t, { enableAutoPipelining: true });
  const keys = ks.many('auto', 4000);
  const counter = ks.key('auto:counter');
  const sets = await Promise.all(keys.map((key, i) => client.set(key, `auto-${i}`)));
  assert.ok(sets.every((reply) => reply === 'OK'));
  const [values, increments] = await Promise.all([
    Promise.all(keys.map((key) => client.get(key))),
    Promise.all(Array.from({ length: 3000 }, () => client.incr(counter))),
  ]);
  assertListEqual(values, keys.map((_, i) => `auto-${i}`), 'GET replies');
  // Each INCR sees a distinct value: 1..3000 in some order, and all were applied.
  const oneTo3000 = Array.from({ length: 3000 }, (_, i) => i + 1);
  assertListEqual([...increments].sort((a, b) => a - b), oneTo3000, 'INCR replies');
  assert.equal(await client.get(counter), '3000');
  return { sets: sets.length, reads: digest(values), counter: 3000 };
});

// ---- transactions -----------------------------------------------------------------------------

scenario('MULTI/EXEC: replies in order, a failing command does not abort the rest', async (t) => {
  const client = await connect(t);
  const [counter, text, list] = ['counter', 'text', 'list'].map((n) => ks.tagged('tx', n));
  const replies = await client.multi()
    .set(counter, '1').incr(counter).set(text, 'abc').incr(text)
    .lpush(list, 'a', 'b').lrange(list, 0, -1).get(counter)
    .exec();
  assert.equal(replies.length, 7);
  assert.deepEqual(replies.map(([, v]) => v), ['OK', 2, 'OK', undefined, 2, ['b', 'a'], '2']);
  assert.match(String(replies[3][0]), /not an integer/);
  return { replies: replies.map(([e, v]) => (e ? 'error' : v)) };
});

for (const count of [255, 256, 300, 1000]) {
  scenario(`MULTI/EXEC with ${count} XADDs`, async (t) => {
    const client = await connect(t);
    const stream = ks.tagged(`xtx${count}`, 'stream');
    const multi = client.multi();
    for (let i = 0; i < count; i++) multi.xadd(stream, '*', 'i', String(i));
    const ids = pipelineValues(await multi.exec());
    assert.equal(ids.length, count);
    assert.equal(new Set(ids).size, count, 'every XADD got its own id');
    assert.equal(await client.xlen(stream), count);
    const entries = await client.xrange(stream, '-', '+');
    assertListEqual(entries.map(([id]) => id), ids, 'XRANGE ids');
    assertListEqual(entries.map(([, fields]) => fields[1]), ids.map((_, i) => String(i)), 'XRANGE fields');
    return { count, xlen: count };
  });
}

scenario('WATCH: a concurrent write makes EXEC return null', async (t) => {
  const [client, other] = [await connect(t), await connect(t)];
  const key = ks.key('watched');
  await client.set(key, 'initial');

  await client.watch(key);
  assert.equal(await client.get(key), 'initial');
  await other.set(key, 'from-other');
  assert.equal(await client.multi().set(key, 'from-tx').exec(), null);
  assert.equal(await client.get(key), 'from-other');

  await client.watch(key); // no conflict this time: EXEC runs
  assert.deepEqual(await client.multi().set(key, 'from-tx').get(key).exec(), [[null, 'OK'], [null, 'from-tx']]);
  assert.equal(await other.get(key), 'from-tx');
  return { conflict: null, afterConflict: 'from-other', final: 'from-tx' };
});

// ---- pub/sub ----------------------------------------------------------------------------------

/** Collects (channel, message) pairs of `event` until `count` arrived (bounded). */
function collector(client, event) {
  const received = [];
  client.on(event, (...args) => received.push(args.slice(-2)));
  return {
    received,
    waitFor: (count) => waitFor(() => received.length >= count, 10_000, `${count} '${event}' events`),
  };
}

scenario('pub/sub: SUBSCRIBE and PSUBSCRIBE receive every message in order', async (t) => {
  const [subscriber, publisher] = [await connect(t), await connect(t)];
  const channel = ks.channel('plain');
  const pattern = ks.channel('pattern:*');
  const patternChannels = ['a', 'b'].map((s) => ks.channel(`pattern:${s}`));
  const messages = collector(subscriber, 'message');
  const pmessages = collector(subscriber, 'pmessage');
  assert.equal(await subscriber.subscribe(channel), 1);
  assert.equal(await subscriber.psubscribe(pattern), 2);

  const sent = [];
  for (let i = 0; i < 300; i++) {
    assert.equal(await publisher.publish(channel, `m${i}`), 1);
    const patternChannel = patternChannels[i % 2];
    assert.equal(await publisher.publish(patternChannel, `p${i}`), 1);
    sent.push([patternChannel, `p${i}`]);
  }
  await messages.waitFor(300);
  await pmessages.waitFor(300);
  assertListEqual(messages.received, Array.from({ length: 300 }, (_, i) => [channel, `m${i}`]), 'messages');
  assertListEqual(pmessages.received, sent, 'pattern messages');

  await subscriber.unsubscribe(channel);
  await subscriber.punsubscribe(pattern);
  assert.equal(await publisher.publish(channel, 'after'), 0);
  return { messages: 300, pmessages: 300, afterUnsubscribe: 0 };
});

scenario('sharded pub/sub: SSUBSCRIBE to channels of several slots', async (t) => {
  const [subscriber, publisher] = [await connect(t), await connect(t)];
  const channels = ['s1', 's2', 's3'].map((s) => ks.channel(s));
  assert.ok(distinctSlots(channels) === 3);
  const smessages = collector(subscriber, 'smessage');
  const counts = [];
  for (const channel of channels) counts.push(await subscriber.ssubscribe(channel));

  const sent = [];
  for (let i = 0; i < 150; i++) {
    const channel = channels[i % 3];
    assert.equal(await publisher.spublish(channel, `s${i}`), 1);
    sent.push([channel, `s${i}`]);
  }
  await smessages.waitFor(150);
  const perChannel = (list, ch) => list.filter(([c]) => c === ch);
  for (const channel of channels) {
    assert.deepEqual(perChannel(smessages.received, channel), perChannel(sent, channel));
  }
  assert.equal(smessages.received.length, 150);
  // Like a single server: each confirmation counts every shard channel of the connection.
  assert.deepEqual(counts, [1, 2, 3]);
  return { smessages: 150 };
});

scenario('pub/sub: commands pipelined behind SUBSCRIBE and UNSUBSCRIBE are answered in order', async (t) => {
  const client = await connect(t);
  const [key, ch] = [ks.key('pipesub'), ks.channel('pipesub')];
  await client.set(key, 'value');
  // Issued in one tick, so they go out in one write: the server answers them in order, and once
  // the UNSUBSCRIBE is done the connection takes ordinary commands again.
  const replies = await within(10_000, 'no replies within 10 s', Promise.all([
    client.subscribe(ch), client.unsubscribe(ch), client.get(key), client.ping()]));
  assert.deepEqual(replies, [1, 0, 'value', 'PONG']);
  return { replies };
});

// ---- blocking commands ------------------------------------------------------------------------

/** Starts `blockingCall` on its own client, waits until the server reports it blocked, then runs
 * `wake` on another client; returns the blocking call's reply. */
async function blockThenWake(t, blockingCall, wake) {
  const [blocker, other] = [await connect(t), await connect(t)];
  const started = Date.now();
  const reply = blockingCall(blocker);
  await waitUntilBlocked(other);
  await wake(other);
  const value = await within(10_000, 'the blocking command got no reply within 10 s', reply);
  assert.ok(Date.now() - started < 9000, 'woken by the push, not by its timeout');
  return value;
}

scenario('BLPOP woken by another client', async (t) => {
  const list = ks.key('blpop');
  const reply = await blockThenWake(t, (c) => c.blpop(list, 10), (c) => c.rpush(list, 'x', 'y'));
  assert.deepEqual(reply, [list, 'x']);
  return { popped: reply[1] };
});

scenario('BRPOP woken by another client', async (t) => {
  const list = ks.key('brpop');
  const reply = await blockThenWake(t, (c) => c.brpop(list, 10), (c) => c.rpush(list, 'x', 'y'));
  assert.deepEqual(reply, [list, 'y']);
  return { popped: reply[1] };
});

scenario('BLMOVE woken by another client', async (t) => {
  const [source, destination] = [ks.tagged('blmove', 'src'), ks.tagged('blmove', 'dst')];
  const moved = await blockThenWake(t, (c) => c.blmove(source, destination, 'LEFT', 'RIGHT', 10),
    (c) => c.rpush(source, 'm1', 'm2'));
  assert.equal(moved, 'm1');
  const client = await connect(t);
  assert.deepEqual(await client.lrange(destination, 0, -1), ['m1']);
  assert.deepEqual(await client.lrange(source, 0, -1), ['m2']);
  return { moved };
});

scenario('BLPOP on an empty list times out with null', async (t) => {
  const client = await connect(t);
  const started = Date.now();
  assert.equal(await client.blpop(ks.key('blpop:empty'), 1), null);
  assert.ok(Date.now() - started >= 900, 'waited for its timeout');
  return { reply: null };
});

// ---- Lua --------------------------------------------------------------------------------------

scenario('EVAL, SCRIPT LOAD and EVALSHA', async (t) => {
  const client = await connect(t);
  const [name, counter] = [ks.tagged('lua', 'name'), ks.tagged('lua', 'counter')];
  // The key base (run id and suite) in a comment makes the script new to the server.
  const script = `-- ${ks.base}\nredis.call('SET', KEYS[1], ARGV[1])\n`
    + "return {KEYS[1], redis.call('GET', KEYS[1]), redis.call('INCRBY', KEYS[2], ARGV[2])}";
  assert.deepEqual(await client.eval(script, 2, name, counter, 'hello', 5), [name, 'hello', 5]);

  const sha = await client.script('LOAD', script);
  assert.equal(sha, crypto.createHash('sha1').update(script).digest('hex'));
  assert.deepEqual(await client.script('EXISTS', sha, '0'.repeat(40)), [1, 0]);
  assert.deepEqual(await client.evalsha(sha, 2, name, counter, 'again', 7), [name, 'again', 12]);
  await assert.rejects(client.evalsha('0'.repeat(40), 0), /NOSCRIPT/);
  return { eval: 5, evalsha: 12 };
});

scenario('EVALSHA after EVAL (no SCRIPT LOAD) for keys of many slots', async (t) => {
  const client = await connect(t);
  // EVAL caches the script on the server; a new script per run and suite so no earlier load helps.
  const script = `-- ${ks.base} evalsha-after-eval\nreturn redis.call('INCR', KEYS[1])`;
  const sha = crypto.createHash('sha1').update(script).digest('hex');
  const keys = ks.many('evalsha', 12);
  assert.ok(distinctSlots(keys) >= 10);
  assert.equal(await client.eval(script, 1, keys[0]), 1);
  const replies = [];
  for (const key of keys) replies.push(await client.evalsha(sha, 1, key));
  assert.deepEqual(replies, keys.map((_, i) => (i === 0 ? 2 : 1)));
  return { replies };
});

scenario('defineCommand: 500 concurrent calls over 10 hash tags', async (t) => {
  const client = await connect(t);
  // A new script per run and suite, so the first EVALSHA gets NOSCRIPT and ioredis falls back to EVAL.
  client.defineCommand('ccTransfer', {
    numberOfKeys: 2,
    lua: `-- ${ks.base}\nlocal from = redis.call('DECRBY', KEYS[1], ARGV[1])\n`
      + "local to = redis.call('INCRBY', KEYS[2], ARGV[1])\nreturn {from, to}",
  });
  const tags = Array.from({ length: 10 }, (_, i) => `acct${i}`);
  assert.ok(distinctSlots(tags.map((tag) => ks.tagged(tag, 'x'))) >= 8);
  const calls = Array.from({ length: 500 }, (_, i) => {
    const tag = tags[i % 10];
    return client.ccTransfer(ks.tagged(tag, 'from'), ks.tagged(tag, 'to'), 2);
  });
  const replies = await Promise.all(calls);
  assert.ok(replies.every(([from, to]) => from === -to && to > 0 && to <= 100));
  const balances = await client.mget(tags.flatMap((tag) => [ks.tagged(tag, 'from'), ks.tagged(tag, 'to')]));
  assert.deepEqual(balances, tags.flatMap(() => ['-100', '100']));
  return { calls: 500, balances };
});

// ---- stopping long-running scripts (the servers run with busy-reply-threshold 1000 ms) ----------

scenario('SCRIPT KILL stops a long-running read-only script', async (t) => {
  const [runner, killer] = [await connect(t), await connect(t)];
  const spinKey = ks.key('spin:script');
  const error = await runAndKill(() => runner.eval(`-- ${ks.base}\n${spinLua('ARGV[1]')}`, 1, spinKey, 10),
    () => killer.script('KILL'), 'SCRIPT KILL');
  assert.match(error.message, /killed by user/i);
  assert.equal(await runner.get(spinKey), null); // the node serves commands again
  return { killed: true };
});

scenario('FUNCTION KILL stops a long-running function', async (t) => {
  const [runner, killer] = [await connect(t), await connect(t)];
  const library = libraryName(ks.base);
  assert.equal(await killer.function('LOAD', 'REPLACE', spinLibrary(library)), library);
  const spinKey = ks.key('spin:function');
  const error = await runAndKill(() => runner.fcall(`${library}_spin`, 1, spinKey, 10),
    () => killer.function('KILL'), 'FUNCTION KILL');
  assert.match(error.message, /killed by user/i);
  assert.equal(await runner.get(spinKey), null);
  assert.equal(await killer.function('DELETE', library), 'OK');
  return { killed: true };
});

// ---- SCAN -------------------------------------------------------------------------------------

scenario('scanStream iterates to the end and returns exactly the keys written', async (t) => {
  const client = await connect(t);
  const keys = ks.many('scan', 2500);
  pipelineValues(await keys.reduce((p, key) => p.set(key, '1'), client.pipeline()).exec());
  const count = 200;
  const maxBatches = Math.ceil((await client.dbsize()) / count) * 8 + 100;
  const stream = client.scanStream({ match: `${ks.base}:scan:*`, count });
  let batches;
  try {
    batches = await collectBounded(stream, { maxItems: maxBatches, timeoutMs: 30_000 }, 'scanStream');
  } finally {
    stream.destroy();
  }
  const found = batches.flat();
  assertSameKeySet(found, keys, 'scanStream');
  return { keys: new Set(found).size };
});

// ---- streams ----------------------------------------------------------------------------------

scenario('streams: consumer groups with XREADGROUP, XPENDING, XACK and a blocked reader', async (t) => {
  const [client, reader] = [await connect(t), await connect(t)];
  const stream = ks.key('stream');
  assert.equal(await client.xgroup('CREATE', stream, 'group', '0', 'MKSTREAM'), 'OK');
  const ids = pipelineValues(await Array.from({ length: 50 }, (_, i) => i)
    .reduce((p, i) => p.xadd(stream, '*', 'n', String(i)), client.pipeline()).exec());

  const read = async (consumer, count) => {
    const reply = await client.xreadgroup('GROUP', 'group', consumer, 'COUNT', count, 'STREAMS', stream, '>');
    return reply[0][1];
  };
  const first = await read('c1', 30);
  const second = await read('c2', 30);
  assert.deepEqual(first.map(([id]) => id), ids.slice(0, 30));
  assert.deepEqual(second.map(([id]) => id), ids.slice(30));
  assert.deepEqual(second[0][1], ['n', '30']);

  const [pending, minId, maxId, consumers] = await client.xpending(stream, 'group');
  assert.deepEqual([pending, minId, maxId, consumers], [50, ids[0], ids[49], [['c1', '30'], ['c2', '20']]]);
  assert.equal(await client.xack(stream, 'group', ...ids.slice(0, 30)), 30);
  assert.equal((await client.xpending(stream, 'group'))[0], 20);
  const detail = await client.xpending(stream, 'group', '-', '+', 100, 'c2');
  assert.deepEqual(detail.map(([id, consumer]) => [id, consumer]), ids.slice(30).map((id) => [id, 'c2']));

  // A reader blocked on the group is woken by a new entry.
  const blocked = reader.xreadgroup('GROUP', 'group', 'c3', 'BLOCK', 10000, 'STREAMS', stream, '>');
  await waitUntilBlocked(client);
  const newId = await client.xadd(stream, '*', 'n', 'late');
  const woken = await within(10_000, 'XREADGROUP BLOCK got no reply within 10 s', blocked);
  assert.deepEqual(woken, [[stream, [[newId, ['n', 'late']]]]]);
  return { delivered: [30, 20, 1], pendingAfterAck: 20 };
});

// ---- big values -------------------------------------------------------------------------------

scenario('values of 1 MiB and more (strings and binary, single, MSET and pipelined)', async (t) => {
  const client = await connect(t);
  const text = bigValue(MiB + 1, 'text');
  const binary = binaryValue(5 * MiB, 7);
  await client.set(ks.key('big:text'), text);
  await client.set(ks.key('big:binary'), binary);
  assert.equal(await client.get(ks.key('big:text')), text);
  assert.ok((await client.getBuffer(ks.key('big:binary'))).equals(binary));
  assert.equal(await client.strlen(ks.key('big:binary')), 5 * MiB);

  const keys = ks.many('big:multi', 6);
  const values = keys.map((_, i) => bigValue(MiB, `multi${i}`));
  assert.equal(await client.mset(Object.fromEntries(keys.map((k, i) => [k, values[i]]))), 'OK');
  assert.deepEqual(await client.mget(keys), values);

  const pipeline = client.pipeline();
  keys.forEach((key, i) => pipeline.append(key, 'x').get(key));
  const replies = pipelineValues(await pipeline.exec());
  assert.deepEqual(replies.filter((_, i) => i % 2 === 1), values.map((v) => `${v}x`));
  return { text: digest(text), binary: digest(binary), multi: digest(values) };
});

// ---- hash tags --------------------------------------------------------------------------------

scenario('hash-tagged keys: multi-key commands within one slot', async (t) => {
  const client = await connect(t);
  const tags = Array.from({ length: 10 }, (_, i) => `user${i}`);
  assert.ok(distinctSlots(tags.map((tag) => ks.tagged(tag, 'x'))) >= 8, 'tags spread over slots');
  const results = [];
  for (const tag of tags) {
    const key = (name) => ks.tagged(tag, name);
    assert.equal(await client.msetnx(key('a'), `${tag}-a`, key('b'), `${tag}-b`), 1);
    assert.equal(await client.msetnx(key('a'), 'again', key('c'), 'c'), 0);
    assert.equal(await client.rename(key('a'), key('renamed')), 'OK');
    await client.sadd(key('s1'), 'x', 'y', 'z');
    await client.sadd(key('s2'), 'y', 'z', 'w');
    assert.equal(await client.sinterstore(key('both'), key('s1'), key('s2')), 2);
    assert.deepEqual((await client.smembers(key('both'))).sort(), ['y', 'z']);
    await client.rpush(key('l1'), '1', '2');
    assert.equal(await client.lmove(key('l1'), key('l2'), 'LEFT', 'LEFT'), '1');
    results.push(await client.mget(key('renamed'), key('b'), key('a'), key('c')));
  }
  assert.deepEqual(results, tags.map((tag) => [`${tag}-a`, `${tag}-b`, null, null]));
  return { tags: tags.length, results: digest(results) };
});
