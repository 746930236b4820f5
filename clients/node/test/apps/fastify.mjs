// A Fastify app limited by @fastify/rate-limit with redis-throttle's store,
// run by the tests in a child process. Prints "listening <port>" once it serves.
// MAX, TIME_WINDOW (ms), PREFIX, CLIENT (see clients.mjs). The client's key
// is the X-Key header. GET / answers 200; GET /strict has its own limit of 2.
import rateLimit from "@fastify/rate-limit";
import Fastify from "fastify";
import { throttleStore } from "redis-throttle/fastify";
import { connect } from "./clients.mjs";

const client = await connect();
const app = Fastify();
await app.register(rateLimit, {
  max: Number(process.env.MAX ?? 5),
  timeWindow: Number(process.env.TIME_WINDOW ?? 60_000),
  keyGenerator: (req) => req.headers["x-key"] ?? "anonymous",
  store: throttleStore(client, { prefix: process.env.PREFIX }),
});
app.get("/", async () => "ok");
app.get("/strict", { config: { rateLimit: { max: 2, timeWindow: 60_000 } } }, async () => "ok");
await app.listen({ port: Number(process.env.PORT ?? 0), host: "127.0.0.1" });
console.log(`listening ${app.server.address().port}`);
