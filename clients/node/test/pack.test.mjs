// The package as a user gets it: `npm pack`, installed into an empty
// project, runs every example of its README (JavaScript, CommonJS) and
// type-checks the TypeScript one against the published types.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { plain } from "./helpers.mjs";

const run = promisify(execFile);
const pkgDir = new URL("..", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const DB = 9; // the examples use fixed keys: a database of their own, emptied before each

/** The README's fenced blocks of the given languages, in order. */
function blocks(...langs) {
  const text = readFileSync(join(pkgDir, "README.md"), "utf8");
  return [...text.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)].filter(([, lang]) => langs.includes(lang)).map(([, lang, code]) => ({ lang, code }));
}

describe("npm pack, installed into an empty project", () => {
  let dir;
  let redis;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "redis-throttle-pack-"));
    // dist/ is built by scripts/node.sh; --ignore-scripts: no rebuild under the other test files
    const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: pkgDir });
    const [{ filename, files }] = JSON.parse(stdout);
    const paths = files.map((f) => f.path);
    assert.ok(paths.includes("dist/esm/index.js") && paths.includes("dist/cjs/index.js") && paths.includes("README.md"));
    assert.ok(paths.includes("dist/esm/index.d.ts") && paths.includes("dist/cjs/express.d.ts"));
    assert.ok(!paths.some((p) => p.startsWith("test/") || p.startsWith("src/")), paths.join(" "));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    const deps = ["redis", "ioredis", "express", "express-rate-limit", "fastify", "@fastify/rate-limit", "@types/node"];
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", join(dir, filename), ...deps.map((d) => `${d}@${pkg.devDependencies[d]}`)],
      { cwd: dir },
    );
    redis = plain(`${process.env.REDIS_URL}/${DB}`);
  });
  after(() => {
    redis?.disconnect();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const examples = blocks("js", "cjs");
  test("the README has examples", () => assert.ok(examples.length >= 6, `${examples.length}`));
  examples.forEach(({ lang, code }, i) => {
    const first = code.split("\n").find((l) => /from "redis-throttle|require\("redis-throttle/.test(l));
    test(`README example ${i + 1} (${lang}): ${first?.trim()}`, async () => {
      await redis.flushdb();
      const file = join(dir, `example-${i + 1}.${lang === "cjs" ? "cjs" : "mjs"}`);
      writeFileSync(file, code);
      await run(process.execPath, [file], { cwd: dir, env: { ...process.env, REDIS_URL: `${process.env.REDIS_URL}/${DB}` }, timeout: 60_000 });
    });
  });

  test("the TypeScript example type-checks against the published types", async () => {
    const ts = blocks("ts");
    assert.equal(ts.length, 1);
    writeFileSync(join(dir, "example.ts"), ts[0].code);
    writeFileSync(
      join(dir, "tsconfig.json"),
      // skipLibCheck as most projects have it (ioredis's own .d.ts need @types they do not depend on);
      // our .d.ts are checked where they are used
      JSON.stringify({ compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", types: ["node"] }, files: ["example.ts"] }),
    );
    const tsc = join(pkgDir, "node_modules/typescript/bin/tsc");
    await run(process.execPath, [tsc, "-p", dir], { cwd: dir }).catch((e) => {
      throw new Error(`tsc: ${e.stdout}${e.stderr}`);
    });
    // and the types do refuse what is wrong: not a client, a number for a key
    writeFileSync(join(dir, "example.ts"), `import { Limiter } from "redis-throttle";\nnew Limiter({}, "k");\nnew Limiter({} as any, 5);\n`);
    const refused = await run(process.execPath, [tsc, "-p", dir], { cwd: dir }).then(() => "", (e) => e.stdout);
    assert.match(refused, /example\.ts\(2,[^\n]*TS2345/);
    assert.match(refused, /example\.ts\(3,[^\n]*TS2345/);
  });
});
