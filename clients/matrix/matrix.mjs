// Client matrix, Node.js side: the module's commands through ioredis and
// node-redis (package `redis`), standalone and against a Redis Cluster.
//
//   REDIS_URL=redis://127.0.0.1:6379 CLUSTER_NODES=127.0.0.1:30001,127.0.0.1:30002 \
//       node clients/matrix/matrix.mjs
//
// clients/matrix/run.sh installs the pinned packages (package-lock.json) and
// starts the servers. Each case drives THROTTLE, THROTTLE.PEEK, THROTTLE.GET,
// PERMIT ... BLOCK and THROTTLE.ALL and checks every reply exactly: every
// integer must be below 9e15 in magnitude, which both clients decode
// exactly (they misread odd integers within 48 of 2^53). Cluster cases
// count the MOVED redirects the nodes answered, to tell a client that routes
// a module command by its key from one that only gets there by redirection.
// The last line is "node: N passed, M failed"; exit status 1 on a failure.

import Redis, { Cluster, Command } from "ioredis";
import { createClient, createCluster } from "redis";
import calculateSlot from "cluster-key-slot";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const IOREDIS_VERSION = require("ioredis/package.json").version;
const NODE_REDIS_VERSION = require("redis/package.json").version;

// Every integer the module replies is below 9e15 in magnitude: under
// 2^53 - 48, the largest integer both clients decode exactly (see the
// "integers near 2^53" case below).
const BOUND = 9e15;
const NEVER = 253402300799999; // PERMIT's "never expires": 9999-12-31T23:59:59.999Z

const url = process.env.REDIS_URL;
const clusterNodes = (process.env.CLUSTER_NODES || "")
  .split(",")
  .filter(Boolean)
  .map((a) => {
    const i = a.lastIndexOf(":");
    return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
  });
const runId = process.env.MATRIX_RUN || String(Date.now());

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const show = (v) =>
  JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Map ? Object.fromEntries(x) : x));

/** Every integer in the reply is one JavaScript reads exactly. */
function checkInts(reply, path = "reply") {
  if (typeof reply === "number") {
    assert(
      Number.isSafeInteger(reply) && Math.abs(reply) < BOUND,
      `${path} = ${reply} is not below 9e15 in magnitude: the client may misread it (odd integers within 48 of 2^53 are misread)`,
    );
  } else if (typeof reply === "bigint") {
    assert(reply > -BigInt(BOUND) && reply < BigInt(BOUND), `${path} = ${reply} is not below 9e15 in magnitude`);
  } else if (Array.isArray(reply)) {
    reply.forEach((v, i) => checkInts(v, `${path}[${i}]`));
  } else if (reply instanceof Map) {
    for (const [k, v] of reply) checkInts(v, `${path}[${k}]`);
  } else if (reply && typeof reply === "object" && !Buffer.isBuffer(reply)) {
    for (const [k, v] of Object.entries(reply)) checkInts(v, `${path}[${k}]`);
  }
}

/** THROTTLE.GET: a flat field/value array (RESP2, or RESP3 mapped to RESP2
 * shapes), a Map, or a plain object, depending on the client's mapping. */
function asMap(reply) {
  if (Array.isArray(reply)) {
    assert(reply.length % 2 === 0, `GET reply ${show(reply)}`);
    const m = {};
    for (let i = 0; i < reply.length; i += 2) m[String(reply[i])] = reply[i + 1];
    return m;
  }
  if (reply instanceof Map) return Object.fromEntries(reply);
  assert(reply && typeof reply === "object", `GET reply ${show(reply)}`);
  return reply;
}

const eq = (a, b) => show(a) === show(b);

/** The scenario every client runs: [name, args, check(reply)]. `mapShape`
 * is "object" when the client maps RESP3 maps to objects/Maps. */
function steps(ns, mapShape) {
  const bucket = `${ns}:bucket`;
  const permit = `${ns}:permit`;
  const sec = `{${ns}}:sec`;
  const min = `{${ns}}:min`;
  const state = {};
  return [
    ["THROTTLE", ["THROTTLE", bucket, "5", "2", "8"], (r) => assert(eq(r, [1, 79, 0, 200, 80]), show(r))],
    [
      "THROTTLE.PEEK",
      ["THROTTLE.PEEK", bucket, "5", "2", "8"],
      (r) => assert(r[0] === 1 && (r[1] === 78 || r[1] === 79) && r[2] === 0 && r[4] === 80, show(r)),
    ],
    [
      "THROTTLE.GET (last call)",
      ["THROTTLE.GET", bucket],
      (r) => {
        if (mapShape === "object") assert(!Array.isArray(r), `a RESP3 map, got ${show(r)}`);
        const m = asMap(r);
        assert(m.limit === 80 && m.rps === "5", show(m));
        assert(m.tokens === 79 || m.tokens === 80, show(m));
        assert(m.source === "last-call", show(m));
        assert(m.burst === null && m.window === null, `burst and window are nil for a last call: ${show(m)}`);
        assert(m.knobs_ttl_ms === -1, show(m));
        assert(m.reset_after_ms >= 0 && m.reset_after_ms <= 200, show(m));
      },
    ],
    [
      "THROTTLE.SET",
      ["THROTTLE.SET", bucket, "RPS", "10", "BURST", "1", "WINDOW", "8"],
      (r) => assert(r === "OK", show(r)),
    ],
    [
      "THROTTLE.GET (knobs)",
      ["THROTTLE.GET", bucket],
      (r) => {
        const m = asMap(r);
        assert(m.source === "knobs" && m.rps === "10" && m.burst === "1" && m.window === "8", show(m));
        assert(m.limit === 80 && m.knobs_ttl_ms > 0, show(m));
      },
    ],
    ["THROTTLE.GET (missing key)", ["THROTTLE.GET", `${ns}:none`], (r) => assert(r === null, show(r))],
    [
      "PERMIT (immediate)",
      // a minute's interval: the key lives a minute, however slow the machine
      ["PERMIT", permit, "60000", "5"],
      (r) => {
        assert(Array.isArray(r) && r.length === 3, show(r));
        state.first = r[1];
        assert(r[0] === 0 && r[2] === NEVER, `immediate permit ${show(r)}: expected [0, now_ms, ${NEVER}]`);
      },
    ],
    ["PERMIT (queue full: nil)", ["PERMIT", permit, "60000", "0"], (r) => assert(r === null, show(r))],
    [
      "PERMIT ... BLOCK",
      // GRACE: a loaded machine may release the client a little late, and a
      // permit released after it expired answers nil.
      ["PERMIT", permit, "300", "5", "GRACE", "5000", "BLOCK", "5000"],
      (r) => {
        assert(Array.isArray(r) && r.length === 3 && r[0] === 0, show(r));
        // valid_at + GRACE; or, when the machine took over 300 ms to get here, an immediate permit
        assert(r[1] >= state.first + 300 && (r[2] === r[1] + 5000 || r[2] === NEVER), show(r));
      },
    ],
    // sec: 5 tokens, one back every 20 s (rps 0.05 over a 100 s window), so
    // the denied call stays denied however long the machine takes between
    // the two steps (at rps 5 it was 200 ms)
    [
      "THROTTLE.ALL (allowed)",
      ["THROTTLE.ALL", "1", sec, "0.05", "1", "100", min, "1", "100", "1"],
      (r) => assert(eq(r, [1, 0, 0, [4, 99]]), show(r)),
    ],
    [
      "THROTTLE.ALL (denied)",
      ["THROTTLE.ALL", "5", sec, "0.05", "1", "100", min, "1", "100", "1"],
      (r) => assert(r[0] === 0 && r[1] === 1 && r[2] > 0 && eq(r[3], [4, 99]), show(r)),
    ],
  ];
}

/** Runs the scenario with `send(args) -> Promise<reply>`. A mismatch is
 * recorded and the scenario goes on, so one run shows every failing step. */
async function runScenario(send, ns, mapShape) {
  const errors = [];
  for (const [name, args, check] of steps(ns, mapShape)) {
    const reply = await send(args);
    for (const f of [check, checkInts]) {
      try {
        f(reply);
      } catch (e) {
        errors.push(`${name}: ${e.message}`);
      }
    }
  }
  assert(errors.length === 0, ["", ...errors].join("\n    "));
}

/** The first key of a module command, as its key spec declares it. */
function firstKey(args) {
  return args[0].toUpperCase() === "THROTTLE.ALL" ? args[2] : args[1];
}

/** MOVED redirects answered by the cluster's nodes so far. */
async function movedTotal() {
  let total = 0;
  for (const n of clusterNodes) {
    const c = new Redis({ host: n.host, port: n.port, lazyConnect: true });
    await c.connect();
    const info = await c.info("errorstats");
    c.disconnect();
    const m = /errorstat_MOVED:count=(\d+)/.exec(info);
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

const spreadKeys = (ns) => Array.from({ length: 12 }, (_, i) => `${ns}:spread:${i}`);

/** Cluster routing: the scenario, then a key on every master and a
 * THROTTLE.ALL across slots; `movedOk(n)` judges the number of MOVED
 * redirects the nodes answered meanwhile. */
async function clusterRun(send, ns, mapShape, movedOk) {
  const before = await movedTotal();
  const errors = [];
  try {
    await runScenario(send, ns, mapShape);
  } catch (e) {
    errors.push(e.message);
  }
  for (const k of spreadKeys(ns)) {
    const r = await send(["THROTTLE", k, "1", "1", "1"]);
    assert(eq(r, [1, 0, 0, 1000, 1]), `${k}: ${show(r)}`);
  }
  let refused = null;
  try {
    await send(["THROTTLE.ALL", "1", `${ns}:a`, "1", "1", "1", `${ns}:b`, "1", "1", "1"]);
  } catch (e) {
    refused = e;
  }
  if (!(refused && /CROSSSLOT/.test(refused.message))) errors.push(`THROTTLE.ALL across slots: ${refused}`);
  const moved = (await movedTotal()) - before;
  if (!movedOk(moved)) errors.push(`${moved} MOVED redirects`);
  assert(errors.length === 0, errors.join("\n    "));
}

// ioredis: a Command whose slot comes from the key we name. ioredis finds
// keys through its built-in table of Redis commands (@ioredis/commands),
// which has no module commands, so Cluster would send them to a random
// master and rely on MOVED. getSlot() is public API on Command.
class KeyedCommand extends Command {
  constructor(args, key) {
    super(args[0], args.slice(1), { replyEncoding: "utf8" });
    this.routeKey = key;
  }
  getSlot() {
    return calculateSlot(this.routeKey);
  }
}

/** A blocking call holds its connection: commands sent after it on the same
 * connection answer only after it. Returns the order replies arrived in. */
async function replyOrder(blockingClient, pingClient, send, ping, key) {
  const order = [];
  await send(blockingClient, ["PERMIT", key, "1000", "5"]);
  const blocked = send(blockingClient, ["PERMIT", key, "1000", "5", "GRACE", "5000", "BLOCK", "5000"]).then(() =>
    order.push("PERMIT"),
  );
  await new Promise((r) => setTimeout(r, 50));
  const pinged = ping(pingClient).then(() => order.push("PING"));
  await Promise.all([blocked, pinged]);
  return order.join(",");
}

const cases = [];
const add = (name, fn) => cases.push([name, fn]);

// ---------------------------------------------------------------- ioredis
for (const protocol of [2, 3]) {
  for (const replyMapping of protocol === 3 ? ["legacy", "resp3"] : ["legacy"]) {
    const label = `ioredis ${IOREDIS_VERSION} call() RESP${protocol}${protocol === 3 ? ` replyMapping ${replyMapping}` : ""}`;
    add(label, async () => {
      const r = new Redis(url, { protocol, replyMapping, maxRetriesPerRequest: 1 });
      try {
        await runScenario((a) => r.call(...a), `io:${runId}:${protocol}${replyMapping}`, replyMapping === "resp3" ? "object" : "flat");
      } finally {
        r.disconnect();
      }
    });
  }
}

add(`ioredis: a blocking PERMIT holds its connection; duplicate() frees it`, async () => {
  const r = new Redis(url);
  const dup = r.duplicate();
  try {
    const send = (c, a) => c.call(...a);
    const ping = (c) => c.ping();
    const shared = await replyOrder(r, r, send, ping, `io:${runId}:hol1`);
    assert(shared === "PERMIT,PING", `same connection: ${shared}`);
    const separate = await replyOrder(dup, r, send, ping, `io:${runId}:hol2`);
    assert(separate === "PING,PERMIT", `duplicate(): ${separate}`);
  } finally {
    r.disconnect();
    dup.disconnect();
  }
});

add(`ioredis: keyPrefix is not applied to module commands`, async () => {
  const key = `io:${runId}:prefix`;
  const r = new Redis(url, { keyPrefix: "app:" });
  const plain = new Redis(url);
  try {
    await r.call("THROTTLE", key, "1", "1", "1");
    assert((await plain.exists(key)) === 1, "the unprefixed key exists");
    assert((await plain.exists(`app:${key}`)) === 0, "no prefixed key");
  } finally {
    r.disconnect();
    plain.disconnect();
  }
});

// ------------------------------------------------------------- node-redis
for (const RESP of [2, 3]) {
  add(`node-redis ${NODE_REDIS_VERSION} sendCommand() RESP${RESP}`, async () => {
    const c = createClient({ url, RESP });
    c.on("error", () => {});
    await c.connect();
    try {
      await runScenario((a) => c.sendCommand(a), `nr:${runId}:${RESP}`, RESP === 3 ? "object" : "flat");
    } finally {
      c.destroy();
    }
  });
}

add(`node-redis: a blocking PERMIT holds its connection; duplicate() frees it`, async () => {
  const c = createClient({ url });
  c.on("error", () => {});
  await c.connect();
  const dup = c.duplicate();
  dup.on("error", () => {});
  await dup.connect();
  try {
    const send = (cl, a) => cl.sendCommand(a);
    const ping = (cl) => cl.ping();
    const shared = await replyOrder(c, c, send, ping, `nr:${runId}:hol1`);
    assert(shared === "PERMIT,PING", `same connection: ${shared}`);
    const separate = await replyOrder(dup, c, send, ping, `nr:${runId}:hol2`);
    assert(separate === "PING,PERMIT", `duplicate(): ${separate}`);
  } finally {
    c.destroy();
    dup.destroy();
  }
});

add(`node-redis: keyPrefix is not applied to sendCommand()`, async () => {
  const key = `nr:${runId}:prefix`;
  const c = createClient({ url, keyPrefix: "app:" });
  const plain = createClient({ url });
  for (const x of [c, plain]) {
    x.on("error", () => {});
    await x.connect();
  }
  try {
    await c.sendCommand(["THROTTLE", key, "1", "1", "1"]);
    assert((await plain.exists(key)) === 1, "the unprefixed key exists");
    assert((await plain.exists(`app:${key}`)) === 0, "no prefixed key");
  } finally {
    c.destroy();
    plain.destroy();
  }
});

// ------------------------------------------------- integers near 2^53
// Both clients decode an integer reply digit by digit as
// `number * 10 + byte - 48`, which JavaScript evaluates as
// `(number * 10 + byte) - 48`: the intermediate passes 2^53 for the odd
// integers within 48 of it, and rounds. Pinned here with EVAL, which
// replies any integer we choose, so a client release that changes this
// shows up. The largest integer both read exactly is 2^53 - 48.
const EXACT_UP_TO = 9007199254740944n; // 2^53 - 48
const PROBES = [
  9007199254740944n, 9007199254740943n, 9007199254740945n, 9007199254740990n, 9007199254740991n,
  253402300799999n, -9007199254740991n,
];
const decodesExactly = (v) => (v < 0n ? -v : v) <= EXACT_UP_TO || (v % 2n === 0n);
async function probeIntegers(send) {
  const wrong = [];
  for (const v of PROBES) {
    const got = await send(["EVAL", `return ${v}`, "0"]);
    const exact = typeof got === "number" && Number.isSafeInteger(got) && BigInt(got) === v;
    if (exact !== decodesExactly(v)) wrong.push(`${v} read as ${got} (${exact ? "exact" : "inexact"})`);
  }
  assert(wrong.length === 0, `decoding changed: ${wrong.join("; ")}`);
}
add(`ioredis and node-redis read integers exactly up to 2^53-48, not 2^53-1`, async () => {
  const io = new Redis(url, { protocol: 2 });
  const nr = createClient({ url, RESP: 3 });
  nr.on("error", () => {});
  await nr.connect();
  try {
    await probeIntegers((a) => io.call(...a));
    await probeIntegers((a) => nr.sendCommand(a));
  } finally {
    io.disconnect();
    nr.destroy();
  }
});

// ---------------------------------------------------------------- cluster
if (clusterNodes.length) {
  add(`ioredis Cluster call(): module commands reach a random master, MOVED does the routing`, async () => {
    const c = new Cluster(clusterNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    try {
      // ioredis does not know module commands' keys: expect redirects.
      await clusterRun((a) => c.call(...a), `ioc:${runId}:call`, "flat", (moved) => moved > 0);
    } finally {
      c.disconnect();
    }
  });

  add(`ioredis Cluster sendCommand(KeyedCommand): routed by key, no MOVED`, async () => {
    const c = new Cluster(clusterNodes);
    try {
      const send = (a) => {
        const cmd = new KeyedCommand(a, firstKey(a));
        c.sendCommand(cmd);
        return cmd.promise;
      };
      await clusterRun(send, `ioc:${runId}:keyed`, "flat", (moved) => moved === 0);
    } finally {
      c.disconnect();
    }
  });

  for (const RESP of [2, 3]) {
    add(`node-redis ${NODE_REDIS_VERSION} cluster sendCommand(firstKey, ...) RESP${RESP}: routed by key, no MOVED`, async () => {
      const c = createCluster({ rootNodes: clusterNodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })), RESP });
      c.on("error", () => {});
      await c.connect();
      try {
        const send = (a) => c.sendCommand(firstKey(a), a[0].toUpperCase().endsWith(".GET") || a[0].toUpperCase().endsWith(".PEEK"), a);
        await clusterRun(send, `nrc:${runId}:${RESP}`, RESP === 3 ? "object" : "flat", (moved) => moved === 0);
      } finally {
        c.destroy();
      }
    });
  }

  // Without a first key node-redis does not follow MOVED: after each one it
  // rediscovers the slots and tries another random node (masters and
  // replicas), and gives up after maxCommandRedirections (16) with "Too
  // many Cluster redirections" (node-redis 6.3.1, cluster-slots.js
  // getRandomNode). Each call therefore either answers exactly or fails
  // that way, never anything else; most answer.
  add(`node-redis cluster sendCommand(undefined, ...): a random node each try, exact reply or "Too many Cluster redirections"`, async () => {
    const c = createCluster({ rootNodes: clusterNodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })) });
    c.on("error", () => {});
    await c.connect();
    try {
      const before = await movedTotal();
      let answered = 0;
      for (const k of spreadKeys(`nrc:${runId}:nokey`)) {
        try {
          const r = await c.sendCommand(undefined, false, ["THROTTLE", k, "1", "1", "1"]);
          assert(eq(r, [1, 0, 0, 1000, 1]), `${k}: ${show(r)}`);
          answered++;
        } catch (e) {
          assert(String(e && e.message).includes("Too many Cluster redirections"), `${k}: ${e}`);
        }
      }
      assert(answered >= 6, `only ${answered} of 12 calls answered`);
      const moved = (await movedTotal()) - before;
      assert(moved > 0, "expected MOVED redirects without a first key");
    } finally {
      c.destroy();
    }
  });
}

let passed = 0;
let failed = 0;
for (const [name, fn] of cases) {
  const t0 = performance.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}
console.log(`node: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
