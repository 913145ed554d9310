// The gateway's operator page (/admin) in a real headless Chromium (Debian's
// `chromium`, driven by playwright-core): a wrong key is refused with 401,
// the right one opens a session (HttpOnly, SameSite=Strict cookie), and the
// live connection count on the page changes as a real socket.io-client
// connects to the gateway and leaves.
//
// Needs what chat.test.mjs needs: `npm ci` here, chromium at
// /usr/bin/chromium (or CHROMIUM), and the gateway built (PORTCULLIS_BIN,
// else $CARGO_TARGET_DIR/debug/portcullis, else target/debug/portcullis).
// The screenshot goes to a temporary directory, printed by the test.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { Manager } from "socket.io-client";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const WAIT = 15_000;
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const gatewayBin = process.env.PORTCULLIS_BIN ?? join(targetDir, "debug", "portcullis");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ACCESS_KEY = "admin-test-access-key-0123456789abcdef";
const ADMIN_KEY = "admin-test-operator-key";

let browser;
let gateway;

/** Starts the gateway with the page on; resolves with its base URL. */
function startGateway() {
  assert.ok(existsSync(gatewayBin), `not built: ${gatewayBin} (cargo build -p portcullis-cli)`);
  gateway = spawn(
    gatewayBin,
    ["serve", "--listen", "127.0.0.1:0", "--access-key", ACCESS_KEY, "--echo-hub", "echo", "--admin"],
    {
      // The admin key through the environment, as an operator should pass it.
      env: { ...process.env, PORTCULLIS_LOG: "warn", PORTCULLIS_ADMIN_KEY: ADMIN_KEY },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("the gateway printed no connection string")), WAIT);
    gateway.once("exit", (code) => reject(new Error(`the gateway exited with ${code}`)));
    createInterface({ input: gateway.stdout }).on("line", (line) => {
      const match = /^Endpoint=(http:\/\/[^/;]+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
      }
    });
  });
}

before(async () => {
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  gateway?.kill("SIGTERM");
});

/** A client token for hub `echo`, minted by the binary's `token` command. */
function clientToken(base) {
  return execFileSync(gatewayBin, ["token", "--hub", "echo", "--user", "watcher", "--access-key", ACCESS_KEY, "--endpoint", base])
    .toString()
    .trim();
}

/** A socket.io-client Manager: one Engine.IO connection to hub `echo`. */
function connectClient(base) {
  const manager = new Manager(base, {
    path: "/clients/socketio/hubs/echo",
    query: { access_token: clientToken(base) },
    transports: ["websocket"],
    reconnection: false,
    autoConnect: false,
  });
  return new Promise((resolvePromise, reject) => {
    manager.open((error) => (error ? reject(error) : resolvePromise(manager)));
  });
}

test("the operator page: login refused with a wrong key, live connection count after login", async () => {
  const base = await startGateway();
  const shots = mkdtempSync(join(tmpdir(), "portcullis-admin-"));

  // Without a session the stats are refused.
  const anonymous = await fetch(`${base}/admin/api/stats`);
  assert.equal(anonymous.status, 401);

  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(`${base}/admin`);
  await page.locator("#key").waitFor();

  // A wrong key: 401 and the form again, with an error.
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/admin/login")),
    page.locator("#key").fill("not-the-key").then(() => page.locator("#login").click()),
  ]);
  assert.equal(refused.status(), 401);
  await page.locator("#error").waitFor();
  assert.equal(await page.locator("#error").textContent(), "Wrong key.");
  assert.equal((await context.cookies()).length, 0, "no session for a wrong key");
  // An access key does not log in when an admin key is set.
  await page.locator("#key").fill(ACCESS_KEY);
  const [alsoRefused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/admin/login")),
    page.locator("#login").click(),
  ]);
  assert.equal(alsoRefused.status(), 401);

  // The right key: a session cookie and the dashboard.
  await page.locator("#key").fill(ADMIN_KEY);
  await Promise.all([page.waitForURL(`${base}/admin`), page.locator("#login").click()]);
  const [cookie] = await context.cookies();
  assert.equal(cookie.name, "portcullis_admin");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(cookie.path, "/admin");
  assert.ok(cookie.value.length >= 43, "a 256-bit random session id");
  const total = page.locator("#total-connections");
  await page.waitForFunction(() => document.getElementById("total-connections").textContent === "0");

  // A real socket.io-client connects: the count on the page goes to 1.
  const client = await connectClient(base);
  await page.waitForFunction(() => document.getElementById("total-connections").textContent === "1");
  const row = page.locator('#hubs tr[data-hub="echo"]');
  await row.locator("td.connections", { hasText: "1" }).waitFor();
  assert.match(await row.textContent(), /built-in echo/);

  // A refused handshake shows under its reason.
  const bad = await fetch(`${base}/clients/socketio/hubs/echo/?EIO=4&transport=polling&access_token=not-a-jwt`);
  assert.equal(bad.status, 401);
  await row.locator("td", { hasText: "invalid_token: 1" }).waitFor();

  // Messages for the rates and the chart (the echo application answers
  // each), then a picture of it.
  // (Socket.IO packets: the Manager closes on anything it cannot decode.)
  const sending = setInterval(() => client.engine.send('2["tick"]'), 50);
  await page.waitForFunction(() => Number(document.getElementById("rate-in").textContent) > 0);
  await page.waitForTimeout(2500);
  assert.equal(await total.textContent(), "1", "the client stayed connected while sending");
  clearInterval(sending);
  const screenshot = join(shots, "admin-one-connection.png");
  await page.screenshot({ path: screenshot });
  console.log(`operator page screenshot: ${screenshot}`);

  // It leaves: back to 0.
  client.engine.close();
  await page.waitForFunction(() => document.getElementById("total-connections").textContent === "0");
  assert.equal(await total.textContent(), "0");

  // Logging out ends the session: the stats are refused with the old cookie.
  await Promise.all([page.waitForURL(`${base}/admin`), page.getByRole("button", { name: "Log out" }).click()]);
  await page.locator("#key").waitFor();
  const stale = await fetch(`${base}/admin/api/stats`, { headers: { cookie: `portcullis_admin=${cookie.value}` } });
  assert.equal(stale.status, 401);
  await context.close();
});
