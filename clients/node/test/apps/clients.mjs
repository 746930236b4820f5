// What the example apps share: the Redis client an app uses, chosen by
// CLIENT (node-redis | ioredis | node-redis-cluster | ioredis-cluster), and
// running an app as a process of its own. Only the chosen library is loaded
// (each takes a tenth of a CPU-second or more to import).

export async function connect(env = process.env) {
  const nodes = (env.CLUSTER_NODES ?? "").split(",").map((a) => {
    const [host, port] = a.split(":");
    return { host, port: Number(port) };
  });
  switch (env.CLIENT ?? "node-redis") {
    case "node-redis": {
      const { createClient } = await import("redis");
      return createClient({ url: env.REDIS_URL }).connect();
    }
    case "ioredis": {
      const { default: Redis } = await import("ioredis");
      return new Redis(env.REDIS_URL);
    }
    case "node-redis-cluster": {
      const { createCluster } = await import("redis");
      return createCluster({ rootNodes: nodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })) }).connect();
    }
    case "ioredis-cluster": {
      const { Cluster } = await import("ioredis");
      const cluster = new Cluster(nodes);
      await new Promise((ok) => cluster.once("ready", ok));
      return cluster;
    }
    default:
      throw new Error(`unknown CLIENT ${env.CLIENT}`);
  }
}

/** Closes a client `connect` gave (node-redis: close; ioredis: disconnect). */
export async function close(client) {
  if (typeof client.close === "function") await client.close();
  else client.disconnect();
}

/** When `url` is the script node runs: starts the app with the environment
 * and prints "listening <port>" (what helpers.startApp waits for). */
export async function main(url, start) {
  if (process.argv[1] !== new URL(url).pathname) return;
  const app = await start(process.env);
  console.log(`listening ${app.port}`);
}
