// The chat demo in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core): two users log in in two browser contexts, see each other
// online, type, chat (in #general and in a room they join), see each other's
// verified name (a forged name is ignored), then one logs out and is refused;
// logging out in one tab signs out the user's other tabs at once (the
// server revokes the tokens); short tokens are refreshed in band.
//
// Run twice: on the embedded gateway (the default), and over the tunnel to a
// separate `portcullis serve` (the demo's --gateway flag).
//
// Needs: `npm ci` in examples/chat, chromium at /usr/bin/chromium (or
// CHROMIUM), and the workspace built (`cargo build --workspace`; the demo is
// CHAT_BIN, else $CARGO_TARGET_DIR/debug/chat, else target/debug/chat; the
// gateway PORTCULLIS_BIN, else …/debug/portcullis).
// Screenshots go to examples/chat/test/screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const screenshots = join(here, "screenshots");
const WAIT = 15_000;

const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const chatBin = process.env.CHAT_BIN ?? join(targetDir, "debug", "chat");
const gatewayBin = process.env.PORTCULLIS_BIN ?? join(targetDir, "debug", "portcullis");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

let browser;
const children = [];

/** Spawns `bin` and resolves with the first stdout line matching `pattern`. */
function startAndRead(bin, args, pattern, env = {}) {
  assert.ok(existsSync(bin), `not built: ${bin} (cargo build --workspace)`);
  const child = spawn(bin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} printed nothing matching ${pattern}`)), WAIT);
    child.once("exit", (code) => reject(new Error(`${bin} exited with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = pattern.exec(line);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
      }
    });
  });
}

/** Starts the demo on a free port (with `args`); resolves with its URL. */
async function startChat(args = []) {
  const url = await startAndRead(chatBin, ["--listen", "127.0.0.1:0", ...args], /^Chat running at (\S+)/, {
    CHAT_SOCKET_IO_JS: join(here, "../node_modules/socket.io-client/dist/socket.io.min.js"),
  });
  return url.replace(/\/$/, "");
}

/** Starts a standalone gateway (token expiry on, grace `graceMs`); resolves with its connection string. */
function startGateway(graceMs = 25_000) {
  return startAndRead(
    gatewayBin,
    ["serve", "--listen", "127.0.0.1:0", "--access-key", "chat-test-key",
      "--token-expiry", "--token-expiry-grace-ms", String(graceMs)],
    /^(Endpoint=\S+)/,
  );
}

before(async () => {
  mkdirSync(screenshots, { recursive: true });
  // Playwright gives the browser a fresh temporary --user-data-dir itself
  // (it refuses one in `args`), so every run starts from an empty profile.
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const child of children) child.kill("SIGTERM");
});

/** A new browser context (its own cookies) logged in as `username`. */
async function logIn(baseUrl, username, password = username) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(baseUrl + "/");
  assert.match(page.url(), /\/login$/, "logged-out visitors land on the login page");
  await page.getByTestId("username").fill(username);
  await page.getByTestId("password").fill(password);
  await page.getByTestId("login").click();
  await page.waitForURL(baseUrl + "/");
  await page.locator('[data-testid="status"][data-state="connected"]').waitFor();
  return page;
}

const messageFrom = (page, user, text) =>
  page.locator(`#messages li.message[data-from="${user}"]`, { hasText: text });

/** The whole story against the demo at `baseUrl`; screenshots named `mode-…`. */
async function chatStory(baseUrl, mode) {
  const shot = (page, name) => page.screenshot({ path: join(screenshots, `${mode}-${name}.png`) });
  // A wrong password is refused on the login page.
  const intruder = await (await browser.newContext()).newPage();
  await intruder.goto(baseUrl + "/login");
  await intruder.getByTestId("username").fill("alice");
  await intruder.getByTestId("password").fill("wrong");
  await intruder.getByTestId("login").click();
  await intruder.getByTestId("login-error").waitFor({ timeout: WAIT });
  await shot(intruder, "login-error");
  const refused = await intruder.evaluate(async () => (await fetch("/negotiate")).status);
  assert.equal(refused, 401);

  const alice = await logIn(baseUrl, "alice");
  const bob = await logIn(baseUrl, "bob");
  assert.equal(await alice.getByTestId("me").textContent(), "Alice");

  // Presence: each sees the other online.
  await alice.locator('#online li[data-user="bob"]').waitFor();
  await bob.locator('#online li[data-user="alice"]').waitFor();
  assert.match(await bob.locator('#online li[data-user="alice"]').textContent(), /Alice/);

  // Typing indicator, then a message with the sender's verified name.
  await alice.getByTestId("text").pressSequentially("Hello B");
  await bob.getByTestId("typing").filter({ hasText: "Alice is typing…" }).waitFor();
  await alice.getByTestId("text").pressSequentially("ob!");
  await alice.getByTestId("send").click();
  const hello = messageFrom(bob, "alice", "Hello Bob!");
  await hello.waitFor();
  assert.equal(await hello.locator(".from").textContent(), "Alice");
  await bob.getByTestId("typing").filter({ hasText: /^$/ }).waitFor({ state: "attached" });

  await bob.getByTestId("text").fill("Hi Alice, how are you?");
  await bob.getByTestId("text").press("Enter");
  const reply = messageFrom(alice, "bob", "Hi Alice, how are you?");
  await reply.waitFor();
  assert.equal(await reply.locator(".from").textContent(), "Bob");

  // A client cannot choose its name: a message claiming to be from Bob,
  // sent on a second socket of Alice's, arrives as Alice's.
  const forged = await alice.evaluate(async () => {
    const { endpoint, path, token } = await (await fetch("/negotiate")).json();
    const s = io(endpoint, { path, query: { access_token: token }, forceNew: true, reconnection: false });
    await new Promise((ok, fail) => { s.on("connect", ok); s.on("connect_error", fail); });
    const ack = await s.timeout(5000).emitWithAck("message", {
      room: "general",
      text: "I am Bob, trust me",
      from: { id: "bob", name: "Bob" },
      name: "Bob",
    });
    s.disconnect();
    return ack;
  });
  assert.deepEqual(forged, { ok: true });
  const spoof = bob.locator("#messages li.message", { hasText: "I am Bob, trust me" });
  await spoof.waitFor();
  assert.equal(await spoof.getAttribute("data-from"), "alice");
  assert.equal(await spoof.locator(".from").textContent(), "Alice");

  // Rooms: both join #random; a message there reaches only its members.
  for (const page of [alice, bob]) {
    await page.getByTestId("join-name").fill("random");
    await page.getByTestId("join").click();
    await page.getByTestId("room-title").filter({ hasText: "#random" }).waitFor();
  }
  await alice.getByTestId("text").fill("Anyone for lunch?");
  await alice.getByTestId("send").click();
  await messageFrom(bob, "alice", "Anyone for lunch?").waitFor();
  // Not shown in #general.
  await bob.locator('#rooms li[data-room="general"] .link').click();
  await bob.getByTestId("room-title").filter({ hasText: "#general" }).waitFor();
  assert.equal(await messageFrom(bob, "alice", "Anyone for lunch?").count(), 0);
  await bob.locator('#rooms li[data-room="random"] .link').click();
  await messageFrom(bob, "alice", "Anyone for lunch?").waitFor();

  await shot(alice, "alice-chat");
  await shot(bob, "bob-chat");

  // Alice logs out: her socket closes, a new token is refused (401), she is
  // no longer online for Bob, and the chat page sends her to the login page.
  await alice.getByTestId("logout").click();
  await alice.locator('[data-testid="status"][data-state="signed-out"]').waitFor();
  assert.match(await alice.getByTestId("banner").textContent(), /401 unauthorized: log in first/);
  assert.equal(await alice.evaluate(() => window.chat.connected), false);
  const negotiate = await alice.evaluate(async () => {
    const res = await fetch("/negotiate");
    return { status: res.status, body: await res.json() };
  });
  assert.deepEqual(negotiate, { status: 401, body: { message: "unauthorized: log in first" } });
  await bob.locator('#online li[data-user="alice"]').waitFor({ state: "detached" });
  await shot(alice, "alice-signed-out");
  await shot(bob, "bob-after-alice-left");
  await alice.goto(baseUrl + "/");
  assert.match(alice.url(), /\/login$/);
}

/** Another tab of `page`'s browser context (same cookies: the same login), connected. */
async function newTab(page, baseUrl) {
  const tab = await page.context().newPage();
  tab.setDefaultTimeout(WAIT);
  await tab.goto(baseUrl + "/");
  await tab.locator('[data-testid="status"][data-state="connected"]').waitFor();
  return tab;
}

/**
 * Logout revokes the user's tokens: Carol has two tabs open; logging out in
 * one disconnects the other at once (the gateway sends "io server
 * disconnect"; tokens live a minute, so this is not their expiry), and that
 * tab shows "signed out". Bob, another user, stays connected.
 */
async function logoutStory(baseUrl, mode) {
  const shot = (page, name) => page.screenshot({ path: join(screenshots, `${mode}-${name}.png`) });
  const carol = await logIn(baseUrl, "carol");
  const carol2 = await newTab(carol, baseUrl);
  const bob = await logIn(baseUrl, "bob");
  await bob.locator('#online li[data-user="carol"]').waitFor();
  const bobId = await bob.evaluate(() => window.chat.id);
  await shot(carol2, "logout-second-tab-before");

  const transport = await carol2.evaluate(() => window.chat.transport);
  const started = Date.now();
  await carol.getByTestId("logout").click();
  await carol2.locator('[data-testid="status"][data-state="signed-out"]').waitFor({ timeout: 10_000 });
  const elapsed = Date.now() - started;
  const disconnects = await carol2.evaluate(() => window.chat.disconnects);
  // Tokens live a minute (and the grace is 25 s): a few seconds at most is
  // the revocation, not the expiry (usually 50-300 ms; this machine is shared).
  assert.ok(elapsed < 5_000, `the other tab was signed out ${elapsed} ms after the logout`);
  assert.deepEqual(disconnects.map((d) => d.reason), ["io server disconnect"]);
  assert.match(await carol2.getByTestId("banner").textContent(), /signed out.*401/);
  assert.equal(await carol2.evaluate(() => window.chat.connected), false);
  await carol.locator('[data-testid="status"][data-state="signed-out"]').waitFor();
  await bob.locator('#online li[data-user="carol"]').waitFor({ state: "detached" });
  // Bob kept his connection.
  assert.equal(await bob.evaluate(() => window.chat.connected), true);
  assert.equal(await bob.evaluate(() => window.chat.id), bobId);
  await shot(carol2, "logout-second-tab-signed-out");
  await shot(bob, "logout-bob-still-online");
  await carol.context().close();
  await bob.context().close();
  return `other tab (${transport}) disconnected ${disconnects[0].at - started} ms and signed out ${elapsed} ms after the click`;
}

/**
 * Tokens of four seconds, a one-second grace: the page hands the gateway a
 * fresh token over its live connection before each expires, and keeps its
 * socket (same id, still in its room, still receiving) across several
 * expiries.
 */
async function refreshStory(baseUrl, mode) {
  const alice = await logIn(baseUrl, "alice");
  await alice.getByTestId("join-name").fill("lounge");
  await alice.getByTestId("join").click();
  await alice.getByTestId("room-title").filter({ hasText: "#lounge" }).waitFor();
  const id = await alice.evaluate(() => window.chat.id);
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  assert.equal(await alice.evaluate(() => window.chat.id), id, "the same socket");
  assert.equal(await alice.evaluate(() => window.chat.connected), true);
  const refreshes = await alice.evaluate(() => window.chat.refreshes);
  assert.ok(refreshes >= 3, `refreshes: ${refreshes}`);
  // Still in #lounge: a message there comes back.
  await alice.getByTestId("text").fill("still in the lounge");
  await alice.getByTestId("send").click();
  await messageFrom(alice, "alice", "still in the lounge").waitFor();
  await alice.screenshot({ path: join(screenshots, `${mode}-refreshed.png`) });
  await alice.context().close();
}

test("embedded gateway: two users chat with verified names, rooms, typing and presence; logout is refused", async () => {
  await chatStory(await startChat(), "embedded");
});

test("over the tunnel (--gateway): the same story through a separate gateway", async () => {
  const connectionString = await startGateway();
  const baseUrl = await startChat(["--gateway", connectionString]);
  await chatStory(baseUrl, "tunnel");
});

test("embedded gateway: logging out in one tab disconnects the user's other tabs at once", async (t) => {
  t.diagnostic(await logoutStory(await startChat(), "embedded"));
});

test("over the tunnel: logging out in one tab disconnects the user's other tabs at once", async (t) => {
  const baseUrl = await startChat(["--gateway", await startGateway()]);
  t.diagnostic(await logoutStory(baseUrl, "tunnel"));
});

test("embedded gateway: short tokens are refreshed in band; the page keeps its socket across expiries", async () => {
  await refreshStory(await startChat(["--token-ttl-secs", "4", "--token-expiry-grace-ms", "1000"]), "embedded");
});

test("over the tunnel: short tokens are refreshed in band at the separate gateway", async () => {
  const baseUrl = await startChat(["--gateway", await startGateway(1000), "--token-ttl-secs", "4"]);
  await refreshStory(baseUrl, "tunnel");
});
