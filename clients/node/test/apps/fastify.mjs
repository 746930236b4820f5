// A Fastify app limited by @fastify/rate-limit with redis-throttle's store,
// for the tests: started in the test's own process by helpers.startApp, or
// as a process of its own (`node fastify.mjs`, configured by the
// environment, prints "listening <port>" once it serves).
// MAX, TIME_WINDOW (ms), PREFIX, CLIENT (see clients.mjs), PORT. The
// client's key is the X-Key header. GET / answers 200; GET /strict has its
// own limit of 2.
import rateLimit from "@fastify/rate-limit";
import Fastify from "fastify";
import { throttleStore } from "redis-throttle/fastify";
import { close, connect, main } from "./clients.mjs";

/** Serves on loopback; resolves { port, close }. */
export async function start(env = process.env) {
  const client = await connect(env);
  const app = Fastify({ forceCloseConnections: true });
  await app.register(rateLimit, {
    max: Number(env.MAX ?? 5),
    timeWindow: Number(env.TIME_WINDOW ?? 60_000),
    keyGenerator: (req) => req.headers["x-key"] ?? "anonymous",
    store: throttleStore(client, { prefix: env.PREFIX }),
  });
  app.get("/", async () => "ok");
  app.get("/strict", { config: { rateLimit: { max: 2, timeWindow: 60_000 } } }, async () => "ok");
  await app.listen({ port: Number(env.PORT ?? 0), host: "127.0.0.1" });
  return {
    port: app.server.address().port,
    close: async () => {
      await app.close();
      await close(client);
    },
  };
}

await main(import.meta.url, start);
