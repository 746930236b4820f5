// An Express app limited by express-rate-limit, run by the tests in a child
// process. Prints "listening <port>" once it serves.
//
// STORE=throttle (default): redis-throttle's store, given rate-limit-redis's
//   own options ({ sendCommand }) or, with STORE_OPTIONS=client, { client };
// STORE=rate-limit-redis: rate-limit-redis's fixed window, the same line.
// ERL=7: express-rate-limit 7 instead of 8. LIMIT, WINDOW_MS, PREFIX,
// SKIP_FAILED=1 (refund failed requests: the store's decrement), PORT.
// The client's key is the X-Key header. GET / answers 200, GET /fail 500.
import express from "express";
import { connect } from "./clients.mjs";

// The swap is this import: rate-limit-redis's RedisStore, or redis-throttle's.
const { RedisStore: Store } = await import(process.env.STORE === "rate-limit-redis" ? "rate-limit-redis" : "redis-throttle/express");
const { rateLimit } = await import(process.env.ERL === "7" ? "express-rate-limit7" : "express-rate-limit");
const client = await connect();
const sendCommand = client.call ? (command, ...args) => client.call(command, ...args) : (...args) => client.sendCommand(args);
const options = process.env.STORE_OPTIONS === "client" ? { client } : { sendCommand };

const app = express();
app.use(
  rateLimit({
    windowMs: Number(process.env.WINDOW_MS ?? 60_000),
    limit: Number(process.env.LIMIT ?? 5),
    standardHeaders: "draft-6",
    legacyHeaders: false,
    keyGenerator: (req) => req.get("x-key") ?? "anonymous",
    skipFailedRequests: process.env.SKIP_FAILED === "1",
    store: new Store({ ...options, prefix: process.env.PREFIX }),
  }),
);
app.get("/", (req, res) => res.send("ok"));
app.get("/fail", (req, res) => res.status(500).send("failed"));
const server = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
