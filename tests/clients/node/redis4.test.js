'use strict';
// node-redis 4 (npm alias redis4) against one target (REDIS_HOST/REDIS_PORT).
const { createClient, commandOptions, defineScript, WatchError } = require('redis4');
const { defineNodeRedisSuite } = require('./node_redis');

defineNodeRedisSuite({
  name: 'redis4',
  createClient,
  clientOptions: {},
  close: (client) => (client.isOpen ? client.disconnect().catch(() => {}) : undefined),
  // v4's scanIterator yields one key at a time; batch them like v5 for the shared scenario.
  scanKeys: async function* scanKeys(client, options) {
    for await (const key of client.scanIterator(options)) yield [key];
  },
  getBuffer: (client, key) => client.get(commandOptions({ returnBuffers: true }), key),
  defineTransfer: (lua) => defineScript({
    NUMBER_OF_KEYS: 2,
    SCRIPT: lua,
    transformArguments: (from, to, amount) => [from, to, amount],
    transformReply: (reply) => reply,
  }),
  WatchError,
});
