'use strict';
// The node-redis scenarios, shared by node-redis 4 (redis4.test.js) and 5 (redis5.test.js). The
// two majors differ in a few places (scanIterator yields keys or batches, scripts are defined with
// transformArguments or parseCommand, buffers are asked for differently, a client is closed with
// disconnect() or destroy()); each test file passes a `flavour` object with those differences.
// Every scenario uses its own connections, closed when it ends, so a hung reply fails one
// scenario and not the ones after it. node-redis pipelines by itself: commands issued in the same
// tick go out together, which is what `Promise.all` over thousands of calls exercises.

const crypto = require('node:crypto');
const {
  assert, target, keyspace, distinctSlots, digest, bigValue, binaryValue, waitFor, within,
  waitUntilBlocked, collectBounded, assertSameKeySet, assertListEqual, scenario, MiB,
  spinLua, spinLibrary, libraryName, runAndKill,
} = require('./common');

/**
 * flavour: {
 *   name, createClient(options), clientOptions,
 *   close(client)                  immediate close, pending commands rejected,
 *   scanKeys(client, options)      async iterable of key batches (arrays),
 *   getBuffer(client, key)         GET as a Buffer,
 *   defineTransfer(lua)            a script (2 keys, 1 argument) for createClient({scripts}),
 *   WatchError                     the error class a failed WATCH makes exec() throw,
 * }
 */
function defineNodeRedisSuite(flavour) {
  const ks = keyspace(flavour.name);

  async function connect(t, options = {}) {
    const client = flavour.createClient({
      socket: { host: target.host, port: target.port, connectTimeout: 5000, reconnectStrategy: false },
      ...flavour.clientOptions,
      ...options,
    });
    client.on('error', () => {}); // errors reach the awaiting command; keep them off the console
    t.after(() => flavour.close(client));
    await client.connect();
    return client;
  }

  // ---- connecting ----------------------------------------------------------------------------

  scenario('connection options: client name and database 0', async (t) => {
    const client = await connect(t, { name: 'cc-node-redis', database: 0 });
    assert.equal(await client.clientGetName(), 'cc-node-redis');
    assert.equal(await client.set(ks.key('connect'), 'named'), 'OK');
    assert.equal(await client.get(ks.key('connect')), 'named');
    return { name: 'cc-node-redis' };
  });

  // ---- pipelines and multi-key commands -------------------------------------------------------

  scenario('pipeline of 12000 commands across slots', async (t) => {
    const client = await connect(t);
    const keys = ks.many('pipe', 5000);
    const counter = ks.key('pipe:counter');
    const pipeline = client.multi();
    keys.forEach((key, i) => pipeline.set(key, `value-${i}`));
    keys.forEach((key) => pipeline.get(key));
    for (let i = 0; i < 2000; i++) pipeline.incrBy(counter, i % 7);
    const values = await pipeline.execAsPipeline();

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

      assert.equal(await client.mSet(keys.map((k, i) => [k, `v${i}`])), 'OK');
      const half = Math.floor(count / 2); // a missing key in the middle reads as null
      const probe = [...keys.slice(0, half), missing, ...keys.slice(half)];
      const expected = [...keys.slice(0, half).map((_, i) => `v${i}`), null,
        ...keys.slice(half).map((_, i) => `v${i + half}`)];
      assertListEqual(await client.mGet(probe), expected, 'MGET');
      assert.equal(await client.exists(probe), count);
      assert.equal(await client.del(probe), count);
      assertListEqual(await client.mGet(keys), keys.map(() => null), 'MGET after DEL');
      return { count, read: digest(expected), deleted: count };
    });
  }

  scenario('implicit pipelining: 11000 concurrent calls', async (t) => {
    const client = await connect(t);
    const keys = ks.many('auto', 4000);
    const counter = ks.key('auto:counter');
    const sets = await Promise.all(keys.map((key, i) => client.set(key, `auto-${i}`)));
    assert.ok(sets.every((reply) => reply === 'OK'));
    const [values, increments] = await Promise.all([
      Promise.all(keys.map((key) => client.get(key))),
      Promise.all(Array.from({ length: 3000 }, () => client.incr(counter))),
    ]);
    assertListEqual(values, keys.map((_, i) => `auto-${i}`), 'GET replies');
    const oneTo3000 = Array.from({ length: 3000 }, (_, i) => i + 1);
    assertListEqual([...increments].sort((a, b) => a - b), oneTo3000, 'INCR replies');
    assert.equal(await client.get(counter), '3000');
    return { sets: sets.length, reads: digest(values), counter: 3000 };
  });

  // ---- transactions ---------------------------------------------------------------------------

  scenario('MULTI/EXEC: replies in order, a failing command does not abort the rest', async (t) => {
    const client = await connect(t);
    const [counter, text, list] = ['counter', 'text', 'list'].map((n) => ks.tagged('tx', n));
    const ok = await client.multi().set(counter, '1').incr(counter).lPush(list, ['a', 'b'])
      .lRange(list, 0, -1).get(counter).exec();
    assert.deepEqual(ok, ['OK', 2, 2, ['b', 'a'], '2']);

    // A command failing inside EXEC: node-redis throws MultiErrorReply carrying every reply.
    const failing = client.multi().set(text, 'abc').incr(text).get(text).exec();
    const error = await failing.then(() => null, (e) => e);
    assert.ok(error && Array.isArray(error.replies), `expected a MultiErrorReply, got ${error}`);
    assert.deepEqual(error.errorIndexes, [1]);
    assert.equal(error.replies[0], 'OK');
    assert.match(String(error.replies[1].message), /not an integer/);
    assert.equal(error.replies[2], 'abc');
    return { replies: ok, failing: ['OK', 'error', 'abc'] };
  });

  for (const count of [255, 256, 300, 1000]) {
    scenario(`MULTI/EXEC with ${count} XADDs`, async (t) => {
      const client = await connect(t);
      const stream = ks.tagged(`xtx${count}`, 'stream');
      const multi = client.multi();
      for (let i = 0; i < count; i++) multi.xAdd(stream, '*', { i: String(i) });
      const ids = await multi.exec();
      assert.equal(ids.length, count);
      assert.equal(new Set(ids).size, count, 'every XADD got its own id');
      assert.equal(await client.xLen(stream), count);
      const entries = await client.xRange(stream, '-', '+');
      assertListEqual(entries.map((e) => e.id), ids, 'XRANGE ids');
      assertListEqual(entries.map((e) => e.message.i), ids.map((_, i) => String(i)), 'XRANGE fields');
      return { count, xlen: count };
    });
  }

  scenario('WATCH: a concurrent write makes EXEC fail with WatchError', async (t) => {
    // A dedicated connection per transaction: WATCH state belongs to the connection.
    const [client, other] = [await connect(t), await connect(t)];
    const key = ks.key('watched');
    await client.set(key, 'initial');

    await client.watch(key);
    assert.equal(await client.get(key), 'initial');
    await other.set(key, 'from-other');
    await assert.rejects(client.multi().set(key, 'from-tx').exec(), flavour.WatchError);
    assert.equal(await client.get(key), 'from-other');

    await client.watch(key); // no conflict this time: EXEC runs
    assert.deepEqual(await client.multi().set(key, 'from-tx').get(key).exec(), ['OK', 'from-tx']);
    assert.equal(await other.get(key), 'from-tx');
    return { conflict: 'WatchError', afterConflict: 'from-other', final: 'from-tx' };
  });

  // ---- pub/sub --------------------------------------------------------------------------------

  function collector() {
    const received = [];
    return {
      received,
      listener: (message, channel) => received.push([channel, message]),
      waitFor: (count) => waitFor(() => received.length >= count, 10_000, `${count} messages`),
    };
  }

  scenario('pub/sub: SUBSCRIBE and PSUBSCRIBE receive every message in order', async (t) => {
    const [subscriber, publisher] = [await connect(t), await connect(t)];
    const channel = ks.channel('plain');
    const pattern = ks.channel('pattern:*');
    const patternChannels = ['a', 'b'].map((s) => ks.channel(`pattern:${s}`));
    const messages = collector();
    const pmessages = collector();
    await subscriber.subscribe(channel, messages.listener);
    await subscriber.pSubscribe(pattern, pmessages.listener);

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
    await subscriber.pUnsubscribe(pattern);
    assert.equal(await publisher.publish(channel, 'after'), 0);
    return { messages: 300, pmessages: 300, afterUnsubscribe: 0 };
  });

  scenario('sharded pub/sub: SSUBSCRIBE to channels of several slots', async (t) => {
    const [subscriber, publisher] = [await connect(t), await connect(t)];
    const channels = ['s1', 's2', 's3'].map((s) => ks.channel(s));
    assert.ok(distinctSlots(channels) === 3);
    const smessages = collector();
    for (const channel of channels) await subscriber.sSubscribe(channel, smessages.listener);

    const sent = [];
    for (let i = 0; i < 150; i++) {
      const channel = channels[i % 3];
      assert.equal(await publisher.sPublish(channel, `s${i}`), 1);
      sent.push([channel, `s${i}`]);
    }
    await smessages.waitFor(150);
    const perChannel = (list, ch) => list.filter(([c]) => c === ch);
    for (const channel of channels) {
      assert.deepEqual(perChannel(smessages.received, channel), perChannel(sent, channel));
    }
    assert.equal(smessages.received.length, 150);
    return { smessages: 150 };
  });

  scenario('pub/sub: commands pipelined behind SUBSCRIBE and UNSUBSCRIBE are answered in order', async (t) => {
    const client = await connect(t);
    const [key, ch] = [ks.key('pipesub'), ks.channel('pipesub')];
    const shardChannels = ['s1', 's2', 's3'].map((s) => ks.channel(`pipesub:${s}`));
    await client.set(key, 'value');
    // Issued in one tick, so they go out together: the server answers them in order, and once
    // everything is unsubscribed the connection takes ordinary commands again.
    const plain = await within(10_000, 'no replies within 10 s (SUBSCRIBE)', Promise.all([
      client.subscribe(ch, () => {}), client.unsubscribe(ch), client.get(key), client.ping()]));
    assert.deepEqual(plain.slice(2).map(String), ['value', 'PONG']);
    const sharded = await within(10_000, 'no replies within 10 s (SSUBSCRIBE)', Promise.all([
      ...shardChannels.map((c) => client.sSubscribe(c, () => {})), client.sUnsubscribe(), client.get(key)]));
    assert.equal(String(sharded.at(-1)), 'value');
    return { replies: ['value', 'PONG', 'value'] };
  });

  // ---- blocking commands ----------------------------------------------------------------------

  /** Starts `blockingCall` on its own client, waits until the server reports it blocked, then
   * runs `wake` on another client; returns the blocking call's reply. */
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
    const reply = await blockThenWake(t, (c) => c.blPop(list, 10), (c) => c.rPush(list, ['x', 'y']));
    assert.deepEqual({ ...reply }, { key: list, element: 'x' });
    return { popped: reply.element };
  });

  scenario('BRPOP woken by another client', async (t) => {
    const list = ks.key('brpop');
    const reply = await blockThenWake(t, (c) => c.brPop(list, 10), (c) => c.rPush(list, ['x', 'y']));
    assert.deepEqual({ ...reply }, { key: list, element: 'y' });
    return { popped: reply.element };
  });

  scenario('BLMOVE woken by another client', async (t) => {
    const [source, destination] = [ks.tagged('blmove', 'src'), ks.tagged('blmove', 'dst')];
    const moved = await blockThenWake(t, (c) => c.blMove(source, destination, 'LEFT', 'RIGHT', 10),
      (c) => c.rPush(source, ['m1', 'm2']));
    assert.equal(moved, 'm1');
    const client = await connect(t);
    assert.deepEqual(await client.lRange(destination, 0, -1), ['m1']);
    assert.deepEqual(await client.lRange(source, 0, -1), ['m2']);
    return { moved };
  });

  scenario('BLPOP on an empty list times out with null', async (t) => {
    const client = await connect(t);
    const started = Date.now();
    assert.equal(await client.blPop(ks.key('blpop:empty'), 1), null);
    assert.ok(Date.now() - started >= 900, 'waited for its timeout');
    return { reply: null };
  });

  // ---- Lua ------------------------------------------------------------------------------------

  const sha1 = (text) => crypto.createHash('sha1').update(text).digest('hex');

  scenario('EVAL, SCRIPT LOAD and EVALSHA', async (t) => {
    const client = await connect(t);
    const [name, counter] = [ks.tagged('lua', 'name'), ks.tagged('lua', 'counter')];
    // The key base (run id and suite) in a comment makes the script new to the server.
    const script = `-- ${ks.base}\nredis.call('SET', KEYS[1], ARGV[1])\n`
      + "return {KEYS[1], redis.call('GET', KEYS[1]), redis.call('INCRBY', KEYS[2], ARGV[2])}";
    const keys = [name, counter];
    assert.deepEqual(await client.eval(script, { keys, arguments: ['hello', '5'] }), [name, 'hello', 5]);

    const sha = await client.scriptLoad(script);
    assert.equal(sha, sha1(script));
    assert.deepEqual((await client.scriptExists([sha, '0'.repeat(40)])).map(Number), [1, 0]);
    assert.deepEqual(await client.evalSha(sha, { keys, arguments: ['again', '7'] }), [name, 'again', 12]);
    await assert.rejects(client.evalSha('0'.repeat(40)), /NOSCRIPT/);
    return { eval: 5, evalsha: 12 };
  });

  scenario('EVALSHA after EVAL (no SCRIPT LOAD) for keys of many slots', async (t) => {
    const client = await connect(t);
    // EVAL caches the script on the server; a new script per run and suite so no earlier load helps.
    const script = `-- ${ks.base} evalsha-after-eval\nreturn redis.call('INCR', KEYS[1])`;
    const keys = ks.many('evalsha', 12);
    assert.ok(distinctSlots(keys) >= 10);
    assert.equal(await client.eval(script, { keys: [keys[0]] }), 1);
    const replies = [];
    for (const key of keys) replies.push(await client.evalSha(sha1(script), { keys: [key] }));
    assert.deepEqual(replies, keys.map((_, i) => (i === 0 ? 2 : 1)));
    return { replies };
  });

  scenario('defined script (EVALSHA, EVAL on NOSCRIPT): 500 concurrent calls over 10 hash tags', async (t) => {
    // A new script per run and suite, so the first EVALSHA gets NOSCRIPT and node-redis falls back to EVAL.
    const lua = `-- ${ks.base}\nlocal from = redis.call('DECRBY', KEYS[1], ARGV[1])\n`
      + "local to = redis.call('INCRBY', KEYS[2], ARGV[1])\nreturn {from, to}";
    const client = await connect(t, { scripts: { ccTransfer: flavour.defineTransfer(lua) } });
    const tags = Array.from({ length: 10 }, (_, i) => `acct${i}`);
    assert.ok(distinctSlots(tags.map((tag) => ks.tagged(tag, 'x'))) >= 8);
    const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => {
      const tag = tags[i % 10];
      return client.ccTransfer(ks.tagged(tag, 'from'), ks.tagged(tag, 'to'), '2');
    }));
    assert.ok(replies.every(([from, to]) => from === -to && to > 0 && to <= 100));
    const balances = await client.mGet(tags.flatMap((tag) => [ks.tagged(tag, 'from'), ks.tagged(tag, 'to')]));
    assert.deepEqual(balances, tags.flatMap(() => ['-100', '100']));
    return { calls: 500, balances };
  });

  // ---- stopping long-running scripts (the servers run with busy-reply-threshold 1000 ms) --------

  scenario('SCRIPT KILL stops a long-running read-only script', async (t) => {
    const [runner, killer] = [await connect(t), await connect(t)];
    const spinKey = ks.key('spin:script');
    const error = await runAndKill(
      () => runner.eval(`-- ${ks.base}\n${spinLua('ARGV[1]')}`, { keys: [spinKey], arguments: ['10'] }),
      () => killer.scriptKill(), 'SCRIPT KILL');
    assert.match(error.message, /killed by user/i);
    assert.equal(await runner.get(spinKey), null); // the node serves commands again
    return { killed: true };
  });

  scenario('FUNCTION KILL stops a long-running function', async (t) => {
    const [runner, killer] = [await connect(t), await connect(t)];
    const library = libraryName(ks.base);
    assert.equal(await killer.functionLoad(spinLibrary(library), { REPLACE: true }), library);
    const spinKey = ks.key('spin:function');
    const error = await runAndKill(
      () => runner.fCall(`${library}_spin`, { keys: [spinKey], arguments: ['10'] }),
      () => killer.functionKill(), 'FUNCTION KILL');
    assert.match(error.message, /killed by user/i);
    assert.equal(await runner.get(spinKey), null);
    assert.equal(await killer.functionDelete(library), 'OK');
    return { killed: true };
  });

  // ---- SCAN -----------------------------------------------------------------------------------

  scenario('scanIterator iterates to the end and returns exactly the keys written', async (t) => {
    const client = await connect(t);
    const keys = ks.many('scan', 2500);
    await Promise.all(keys.map((key) => client.set(key, '1')));
    const COUNT = 200;
    // Bounds: the batches a full SCAN can take, plus each key at most twice (v4 yields keys one
    // by one, as batches of one).
    const maxItems = Math.ceil((await client.dbSize()) / COUNT) * 8 + 100 + 2 * keys.length;
    const batches = await collectBounded(flavour.scanKeys(client, { MATCH: `${ks.base}:scan:*`, COUNT }),
      { maxItems, timeoutMs: 30_000 }, 'scanIterator');
    const found = batches.flat();
    assert.ok(found.length <= 2 * keys.length, `scanIterator returned ${found.length} keys for ${keys.length}`);
    assertSameKeySet(found, keys, 'scanIterator');
    return { keys: new Set(found).size };
  });

  // ---- streams --------------------------------------------------------------------------------

  scenario('streams: consumer groups with XREADGROUP, XPENDING, XACK and a blocked reader', async (t) => {
    const [client, reader] = [await connect(t), await connect(t)];
    const stream = ks.key('stream');
    assert.equal(await client.xGroupCreate(stream, 'group', '0', { MKSTREAM: true }), 'OK');
    const ids = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.xAdd(stream, '*', { n: String(i) })));

    const read = async (consumer, count) => {
      const reply = await client.xReadGroup('group', consumer, { key: stream, id: '>' }, { COUNT: count });
      assert.equal(reply[0].name, stream);
      return reply[0].messages;
    };
    const first = await read('c1', 30);
    const second = await read('c2', 30);
    assert.deepEqual(first.map((m) => m.id), ids.slice(0, 30));
    assert.deepEqual(second.map((m) => m.id), ids.slice(30));
    assert.deepEqual({ ...second[0].message }, { n: '30' });

    const pending = await client.xPending(stream, 'group');
    assert.deepEqual({ ...pending, consumers: pending.consumers.map((c) => ({ ...c })) }, {
      pending: 50, firstId: ids[0], lastId: ids[49],
      consumers: [{ name: 'c1', deliveriesCounter: 30 }, { name: 'c2', deliveriesCounter: 20 }],
    });
    assert.equal(await client.xAck(stream, 'group', ids.slice(0, 30)), 30);
    assert.equal((await client.xPending(stream, 'group')).pending, 20);
    const detail = await client.xPendingRange(stream, 'group', '-', '+', 100, { consumer: 'c2' });
    assert.deepEqual(detail.map((p) => [p.id, p.owner ?? p.consumer]), ids.slice(30).map((id) => [id, 'c2']));

    // A reader blocked on the group is woken by a new entry.
    const blocked = reader.xReadGroup('group', 'c3', { key: stream, id: '>' }, { BLOCK: 10000 });
    await waitUntilBlocked(client);
    const newId = await client.xAdd(stream, '*', { n: 'late' });
    const woken = await within(10_000, 'XREADGROUP BLOCK got no reply within 10 s', blocked);
    assert.equal(woken[0].name, stream);
    assert.deepEqual(woken[0].messages.map((m) => [m.id, { ...m.message }]), [[newId, { n: 'late' }]]);
    return { delivered: [30, 20, 1], pendingAfterAck: 20 };
  });

  // ---- big values -----------------------------------------------------------------------------

  scenario('values of 1 MiB and more (strings and binary, single, MSET and pipelined)', async (t) => {
    const client = await connect(t);
    const text = bigValue(MiB + 1, 'text');
    const binary = binaryValue(5 * MiB, 7);
    await client.set(ks.key('big:text'), text);
    await client.set(ks.key('big:binary'), binary);
    assert.equal(await client.get(ks.key('big:text')), text);
    assert.ok((await flavour.getBuffer(client, ks.key('big:binary'))).equals(binary));
    assert.equal(await client.strLen(ks.key('big:binary')), 5 * MiB);

    const keys = ks.many('big:multi', 6);
    const values = keys.map((_, i) => bigValue(MiB, `multi${i}`));
    assert.equal(await client.mSet(keys.map((k, i) => [k, values[i]])), 'OK');
    assert.deepEqual(await client.mGet(keys), values);

    const pipeline = client.multi();
    keys.forEach((key) => pipeline.append(key, 'x').get(key));
    const replies = await pipeline.execAsPipeline();
    assert.deepEqual(replies.filter((_, i) => i % 2 === 1), values.map((v) => `${v}x`));
    return { text: digest(text), binary: digest(binary), multi: digest(values) };
  });

  // ---- hash tags ------------------------------------------------------------------------------

  scenario('hash-tagged keys: multi-key commands within one slot', async (t) => {
    const client = await connect(t);
    const tags = Array.from({ length: 10 }, (_, i) => `user${i}`);
    assert.ok(distinctSlots(tags.map((tag) => ks.tagged(tag, 'x'))) >= 8, 'tags spread over slots');
    const results = [];
    for (const tag of tags) {
      const key = (name) => ks.tagged(tag, name);
      assert.equal(Number(await client.mSetNX([[key('a'), `${tag}-a`], [key('b'), `${tag}-b`]])), 1);
      assert.equal(Number(await client.mSetNX([[key('a'), 'again'], [key('c'), 'c']])), 0);
      assert.equal(await client.rename(key('a'), key('renamed')), 'OK');
      await client.sAdd(key('s1'), ['x', 'y', 'z']);
      await client.sAdd(key('s2'), ['y', 'z', 'w']);
      assert.equal(await client.sInterStore(key('both'), [key('s1'), key('s2')]), 2);
      assert.deepEqual((await client.sMembers(key('both'))).sort(), ['y', 'z']);
      await client.rPush(key('l1'), ['1', '2']);
      assert.equal(await client.lMove(key('l1'), key('l2'), 'LEFT', 'LEFT'), '1');
      results.push(await client.mGet([key('renamed'), key('b'), key('a'), key('c')]));
    }
    assert.deepEqual(results, tags.map((tag) => [`${tag}-a`, `${tag}-b`, null, null]));
    return { tags: tags.length, results: digest(results) };
  });
}

module.exports = { defineNodeRedisSuite };
