// The cross-language contract of docs/rate-limiter.md, from Node.js with ioredis: one FCALL of the
// admin-loaded `ratelimit` library per decision (FCALL_RO for a peek). The application user may
// not send Lua (-@scripting +fcall +fcall_ro), so there is no EVAL, SCRIPT LOAD or FUNCTION LOAD here.
"use strict";
const Redis = require("ioredis");

const SUFFIX = { gcra: "g", sliding_log: "s", fixed_window: "f" };

// The key layout the Python client uses: the braces make the whole logical key the cluster hash tag.
function makeKey(prefix, key, algorithm) {
  return `${prefix}:{${key}}:${SUFFIX[algorithm]}`;
}

async function decide(redis, { algorithm = "gcra", key, limit, windowMs, cost = 1, burst, peek = false,
                               prefix = "rl" }) {
  const args = [String(limit), String(windowMs), String(cost), peek ? "1" : "0"];
  if (algorithm === "gcra" && burst !== undefined) args.push(String(burst));
  const fn = peek ? `ratelimit_${algorithm}_ro` : `ratelimit_${algorithm}`;
  const reply = peek
    ? await redis.call("FCALL_RO", fn, 1, makeKey(prefix, key, algorithm), ...args)
    : await redis.call("FCALL", fn, 1, makeKey(prefix, key, algorithm), ...args);
  const [allowed, remaining, retryAfterUs, resetAfterUs] = reply;
  return { allowed: allowed === 1, remaining, retryAfter: retryAfterUs / 1e6, resetAfter: resetAfterUs / 1e6 };
}

async function libraryVersion(redis) {
  return redis.call("FCALL_RO", "ratelimit_version", 0);
}

module.exports = { decide, libraryVersion, makeKey };

// `node ratelimit.js <redis-url> <key> <limit> <window_ms> <n>`: n hits, one JSON line each, then
// the library version; what tests/integration/test_ratelimit_examples.py runs.
if (require.main === module) {
  const [url, key, limit, windowMs, n] = process.argv.slice(2);
  const redis = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true });
  (async () => {
    await redis.connect();
    for (let i = 0; i < Number(n); i++) {
      console.log(JSON.stringify(await decide(redis, { key, limit: Number(limit), windowMs: Number(windowMs) })));
    }
    console.log(JSON.stringify(await decide(redis, { key, limit: Number(limit), windowMs: Number(windowMs), peek: true })));
    console.log(JSON.stringify({ version: await libraryVersion(redis) }));
    await redis.quit();
  })().catch((err) => { console.error(String(err)); process.exit(1); });
}
