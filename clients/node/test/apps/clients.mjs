// The Redis client an example app uses, chosen by CLIENT:
// node-redis | ioredis | node-redis-cluster | ioredis-cluster. Only the
// chosen library is loaded (each takes a tenth of a CPU-second or more to
// import, and the tests start many apps).

export async function connect(kind = process.env.CLIENT ?? "node-redis") {
  const nodes = (process.env.CLUSTER_NODES ?? "").split(",").map((a) => {
    const [host, port] = a.split(":");
    return { host, port: Number(port) };
  });
  switch (kind) {
    case "node-redis": {
      const { createClient } = await import("redis");
      return createClient({ url: process.env.REDIS_URL }).connect();
    }
    case "ioredis": {
      const { default: Redis } = await import("ioredis");
      return new Redis(process.env.REDIS_URL);
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
      throw new Error(`unknown CLIENT ${kind}`);
  }
}
