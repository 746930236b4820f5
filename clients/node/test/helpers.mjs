// Shared by the test files: the servers scripts/node.sh started (REDIS_URL,
// CLUSTER_NODES), one client of every supported kind, unique keys per run,
// and the example apps (in this process, or as child processes).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createInterface } from "node:readline";
import Redis6 from "ioredis";

// The other client libraries load when a test opens one of their clients
// (each takes a tenth of a CPU-second or more to import; most files need
// none of them).
const redis5 = () => import("redis5");
const redis6 = () => import("redis");
const Redis5 = async () => (await import("ioredis5")).default;

export const REDIS_URL = process.env.REDIS_URL;
export const CLUSTER_NODES = (process.env.CLUSTER_NODES ?? "")
  .split(",")
  .filter(Boolean)
  .map((a) => {
    const i = a.lastIndexOf(":");
    return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
  });
if (!REDIS_URL || CLUSTER_NODES.length === 0) {
  throw new Error("REDIS_URL and CLUSTER_NODES must name the test servers: run the suite with scripts/node.sh");
}

const RUN = randomBytes(4).toString("hex");
let counter = 0;
/** A key no other test (or run) uses. */
export const key = (name) => `t:${RUN}:${name}:${++counter}`;

const quiet = (c) => {
  c.on("error", () => {});
  return c;
};

/** One client of each supported kind on the standalone server: [name, open() -> { client, close }]. */
export const STANDALONE = [
  ...[
    ["node-redis 6", redis6],
    ["node-redis 5", redis5],
  ].flatMap(([name, lib]) =>
    [2, 3].map((RESP) => [
      `${name} RESP${RESP}`,
      async () => {
        const client = quiet((await lib()).createClient({ url: REDIS_URL, RESP }));
        await client.connect();
        return { client, close: () => client.destroy() };
      },
    ]),
  ),
  ...[
    ["ioredis 6 RESP3", () => new Redis6(REDIS_URL)],
    ["ioredis 6 RESP3 replyMapping resp3", () => new Redis6(REDIS_URL, { replyMapping: "resp3" })],
    ["ioredis 6 RESP2", () => new Redis6(REDIS_URL, { protocol: 2 })],
    ["ioredis 5", async () => new (await Redis5())(REDIS_URL)],
  ].map(([name, make]) => [
    name,
    async () => {
      const client = quiet(await make());
      return { client, close: () => client.disconnect() };
    },
  ]),
];

const rootNodes = CLUSTER_NODES.map((n) => ({ url: `redis://${n.host}:${n.port}` }));

/** One cluster client of each supported kind. */
export const CLUSTER = [
  ...[
    ["node-redis 6 cluster", redis6],
    ["node-redis 5 cluster", redis5],
  ].map(([name, lib]) => [
    name,
    async () => {
      const client = quiet((await lib()).createCluster({ rootNodes }));
      await client.connect();
      return { client, close: () => client.destroy() };
    },
  ]),
  ...[
    ["ioredis 6 Cluster", async () => Redis6.Cluster],
    ["ioredis 5 Cluster", async () => (await Redis5()).Cluster],
  ].map(([name, cluster]) => [
    name,
    async () => {
      const Cluster = await cluster();
      const client = quiet(new Cluster(CLUSTER_NODES));
      await new Promise((ok, fail) => {
        client.once("ready", ok);
        client.once("error", fail);
      });
      return { client, close: () => client.disconnect() };
    },
  ]),
];

/** A plain ioredis connection to one node, for checks behind the package's back. */
export function plain(url = REDIS_URL) {
  return quiet(new Redis6(url));
}

/** MOVED redirects the cluster's nodes answered so far. */
export async function movedTotal() {
  let total = 0;
  for (const n of CLUSTER_NODES) {
    const c = plain(`redis://${n.host}:${n.port}`);
    const info = await c.info("errorstats");
    c.disconnect();
    const m = /errorstat_MOVED:count=(\d+)/.exec(info);
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts an example app (test/apps/<name>.mjs) on a free loopback port,
 * configured by `env` over this process's environment; resolves { url, stop }
 * once it listens. In this process (an app costs about half a CPU-second to
 * start as a process of its own, and the suites start many), or, with
 * `{ process: true }`, in a child process: for the tests where two app
 * processes share one limit.
 */
export async function startApp(name, env = {}, { process: child = false } = {}) {
  const file = new URL(`./apps/${name}.mjs`, import.meta.url);
  if (!child) {
    const { start } = await import(file);
    const app = await start({ ...process.env, ...env });
    return { url: `http://127.0.0.1:${app.port}`, stop: app.close };
  }
  const proc = spawn(process.execPath, [file.pathname], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: proc.stdout });
  const exited = once(proc, "exit").then(([code]) => {
    throw new Error(`app ${name} exited (${code}) before it listened`);
  });
  const listening = (async () => {
    for await (const line of lines) {
      const m = /^listening (\d+)$/.exec(line);
      if (m) return Number(m[1]);
    }
    throw new Error(`app ${name} closed its output`);
  })();
  const port = await Promise.race([listening, exited]);
  exited.catch(() => {});
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill();
        await once(proc, "exit");
      }
    },
  };
}

/** GET `url` with headers; resolves { status, headers, body }. */
export async function get(url, headers = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: await res.text() };
}
