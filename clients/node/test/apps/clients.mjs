// The Redis client an example app uses, chosen by CLIENT:
// node-redis | ioredis | node-redis-cluster | ioredis-cluster.
import Redis, { Cluster } from "ioredis";
import { createClient, createCluster } from "redis";

export async function connect(kind = process.env.CLIENT ?? "node-redis") {
  const nodes = (process.env.CLUSTER_NODES ?? "").split(",").map((a) => {
    const [host, port] = a.split(":");
    return { host, port: Number(port) };
  });
  switch (kind) {
    case "node-redis":
      return createClient({ url: process.env.REDIS_URL }).connect();
    case "ioredis":
      return new Redis(process.env.REDIS_URL);
    case "node-redis-cluster":
      return createCluster({ rootNodes: nodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })) }).connect();
    case "ioredis-cluster": {
      const cluster = new Cluster(nodes);
      await new Promise((ok) => cluster.once("ready", ok));
      return cluster;
    }
    default:
      throw new Error(`unknown CLIENT ${kind}`);
  }
}
