'use strict';
// node-redis 5 (npm alias redis5) in RESP2 mode against one target (REDIS_HOST/REDIS_PORT).
const { createClient, defineScript, RESP_TYPES, WatchError } = require('redis5');
const { defineNodeRedisSuite } = require('./node_redis');

defineNodeRedisSuite({
  name: 'redis5',
  createClient,
  clientOptions: { RESP: 2 },
  close: (client) => (client.isOpen ? client.destroy() : undefined),
  scanKeys: (client, options) => client.scanIterator(options), // yields batches of keys
  getBuffer: (client, key) => client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(key),
  defineTransfer: (lua) => defineScript({
    NUMBER_OF_KEYS: 2,
    SCRIPT: lua,
    parseCommand(parser, from, to, amount) {
      parser.pushKey(from);
      parser.pushKey(to);
      parser.push(amount);
    },
    transformReply: undefined,
  }),
  WatchError,
});
