// An Express app limited by express-rate-limit, for the tests: started in
// the test's own process by helpers.startApp, or as a process of its own
// (`node express.mjs`, configured by the environment, prints "listening
// <port>" once it serves).
//
// STORE=throttle (default): redis-throttle's store, given rate-limit-redis's
//   own options ({ sendCommand }) or, with STORE_OPTIONS=client, { client };
// STORE=rate-limit-redis: rate-limit-redis's fixed window, the same line.
// ERL=7: express-rate-limit 7 instead of 8. LIMIT, WINDOW_MS, PREFIX,
// SKIP_FAILED=1 (refund failed requests: the store's decrement), PORT.
// The client's key is the X-Key header. GET / answers 200, GET /fail 500.
import express from "express";
import { close, connect, main } from "./clients.mjs";

/** Serves on loopback; resolves { port, close }. */
export async function start(env = process.env) {
  // The swap is this import: rate-limit-redis's RedisStore, or redis-throttle's.
  const { RedisStore: Store } = await import(env.STORE === "rate-limit-redis" ? "rate-limit-redis" : "redis-throttle/express");
  const { rateLimit } = await import(env.ERL === "7" ? "express-rate-limit7" : "express-rate-limit");
  const client = await connect(env);
  const sendCommand = client.call ? (command, ...args) => client.call(command, ...args) : (...args) => client.sendCommand(args);
  const options = env.STORE_OPTIONS === "client" ? { client } : { sendCommand };

  const app = express();
  app.use(
    rateLimit({
      windowMs: Number(env.WINDOW_MS ?? 60_000),
      limit: Number(env.LIMIT ?? 5),
      standardHeaders: "draft-6",
      legacyHeaders: false,
      keyGenerator: (req) => req.get("x-key") ?? "anonymous",
      skipFailedRequests: env.SKIP_FAILED === "1",
      store: new Store({ ...options, prefix: env.PREFIX }),
    }),
  );
  app.get("/", (req, res) => res.send("ok"));
  app.get("/fail", (req, res) => res.status(500).send("failed"));
  const server = await new Promise((ok) => {
    const s = app.listen(Number(env.PORT ?? 0), "127.0.0.1", () => ok(s));
  });
  return {
    port: server.address().port,
    close: async () => {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
      await close(client);
    },
  };
}

await main(import.meta.url, start);
