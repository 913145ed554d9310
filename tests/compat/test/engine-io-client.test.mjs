// The real engine.io-client (and a few raw HTTP / WebSocket requests) against
// the real portcullis binary: echo over polling, WebSocket and upgrade,
// heartbeats, closes, maxPayload, refusals and CORS.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import WebSocket from "ws";

import { nextEvent, startGateway, waitUntil, withTimeout } from "./support/gateway.mjs";

const HUB = "echo";

// ---------------------------------------------------------------------------
// helpers

/**
 * An engine.io-client Socket to `hub` of `gw`, closed when the test ends.
 * `token: null` connects without a token.
 */
function connect(gw, { hub = HUB, token, transports, upgrade, ...rest } = {}) {
  const options = { path: gw.path(hub), ...rest };
  const accessToken = token === undefined ? gw.token({ hub }) : token;
  if (accessToken !== null) options.query = { access_token: accessToken };
  if (transports !== undefined) options.transports = transports;
  if (upgrade !== undefined) options.upgrade = upgrade;
  const socket = new Socket(gw.baseUrl, options);
  // An error is asserted where expected; never let one go unhandled.
  socket.on("error", () => {});
  gw.defer(() => socket.close());
  return socket;
}

/** A comparable form of a message: strings as is, binary as "bin:<hex>". */
function normalize(data) {
  // engine.io-parser decodes an empty message packet ("4") without a data
  // field, so engine.io-client hands `undefined` to "message" listeners.
  if (data === undefined) return "";
  if (typeof data === "string") return data;
  if (Buffer.isBuffer(data)) return `bin:${data.toString("hex")}`;
  if (data instanceof ArrayBuffer) return `bin:${Buffer.from(data).toString("hex")}`;
  if (ArrayBuffer.isView(data)) {
    return `bin:${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("hex")}`;
  }
  throw new Error(`unexpected message type: ${Object.prototype.toString.call(data)}`);
}

/** Records every message of `socket` (normalized); `waitFor(n)` awaits n of them. */
function inbox(socket) {
  const items = [];
  const waiters = new Set();
  socket.on("message", (data) => {
    items.push(normalize(data));
    for (const waiter of waiters) {
      if (items.length >= waiter.n) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  });
  return {
    items,
    async waitFor(n, ms = 5_000) {
      if (items.length >= n) return items;
      const waiter = { n };
      const reached = new Promise((resolve) => {
        waiter.resolve = resolve;
      });
      waiters.add(waiter);
      try {
        await withTimeout(reached, ms, `${n} echoed messages`);
      } catch (error) {
        waiters.delete(waiter);
        error.message += ` (received ${items.length}: ${JSON.stringify(items.slice(-5))} …)`;
        throw error;
      }
      return items;
    },
  };
}

/** Resolves once `socket` is open; fails on an earlier error or close. */
async function opened(socket, ms = 5_000) {
  if (socket.readyState === "open") return;
  const failure = new Promise((_, reject) => {
    socket.once("error", (error) => reject(new Error(`socket error before open: ${describe(error)}`)));
    socket.once("close", (reason) => reject(new Error(`socket closed before open: ${reason}`)));
  });
  await Promise.race([nextEvent(socket, "open", ms), failure]);
}

function describe(error) {
  if (!error) return String(error);
  const parts = [error.message ?? String(error)];
  if (error.description !== undefined) {
    parts.push(`description=${error.description?.message ?? error.description}`);
  }
  return parts.join(" ");
}

/** Sends `messages` and asserts they come back identical and in order. */
async function assertEchoes(socket, box, messages) {
  const start = box.items.length;
  for (const message of messages) socket.send(message);
  await box.waitFor(start + messages.length);
  assert.deepEqual(box.items.slice(start), messages.map(normalize));
}

const TEXTS = ["hello", "ünïcødé ✓ 🚀 — 日本語", "", "x".repeat(20_000), '{"json":[1,2,3]}'];

function binaries() {
  const all = new Uint8Array(256).map((_, i) => i);
  const buffer = Buffer.from([0, 1, 2, 3, 0xfe, 0xff, 0x1e, 0x0a]);
  const arrayBuffer = new Uint8Array([9, 8, 7, 6, 5]).buffer;
  const large = Buffer.alloc(50_000);
  for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff;
  return [all, buffer, arrayBuffer, large];
}

/** 200 messages, mostly text with some binary in between. */
function burst(count = 200) {
  return Array.from({ length: count }, (_, i) =>
    i % 10 === 9 ? Buffer.from(`binary-${i}`) : `message-${i}`,
  );
}

/** Makes engine.io-client ignore the gateway's pings (private API of 6.6). */
function stopAnsweringPings(socket) {
  assert.equal(typeof socket._sendPacket, "function", "engine.io-client internals changed: no _sendPacket");
  const original = socket._sendPacket;
  socket._sendPacket = function (type, ...rest) {
    if (type === "pong") return;
    return original.call(this, type, ...rest);
  };
}

/** A raw polling handshake; returns the parsed open packet. */
async function pollingHandshake(gw, token = gw.token()) {
  const response = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling&access_token=${token}`);
  const body = await response.text();
  assert.equal(response.status, 200, `handshake answered ${response.status}: ${body}`);
  assert.ok(body.startsWith("0{"), `unexpected open packet ${body}`);
  return JSON.parse(body.slice(1));
}

// ---------------------------------------------------------------------------
// 1. polling

test("polling-only session echoes text, binary and a burst in order", async (t) => {
  const gw = await startGateway(t);
  const socket = connect(gw, { transports: ["polling"], upgrade: false });
  const box = inbox(socket);
  await opened(socket);
  assert.equal(socket.transport.name, "polling");
  await gw.waitForConnections(1);

  await assertEchoes(socket, box, TEXTS);
  await assertEchoes(socket, box, binaries());
  await assertEchoes(socket, box, burst(200));

  assert.equal(socket.transport.name, "polling");
  assert.equal(socket.readyState, "open");
});

// ---------------------------------------------------------------------------
// 2. websocket

test("websocket-only session echoes text, binary and a burst in order", async (t) => {
  const gw = await startGateway(t);
  const socket = connect(gw, { transports: ["websocket"] });
  const box = inbox(socket);
  await opened(socket);
  assert.equal(socket.transport.name, "websocket");
  await gw.waitForConnections(1);

  await assertEchoes(socket, box, TEXTS);
  await assertEchoes(socket, box, binaries());
  await assertEchoes(socket, box, burst(200));

  assert.equal(socket.transport.name, "websocket");
  assert.equal(socket.readyState, "open");
});

// ---------------------------------------------------------------------------
// 3. upgrade

test("upgrade polling → websocket loses, duplicates and reorders nothing", async (t) => {
  const gw = await startGateway(t);
  const socket = connect(gw); // default transports, upgrade on
  const box = inbox(socket);

  const sent = [];
  const phases = { beforeOpen: 0, polling: 0, upgrading: 0, websocket: 0 };
  let upgraded = false;
  const send = (phase) => {
    const n = sent.length;
    const message = n % 7 === 6 ? Buffer.from(`bin-${n}-${phase}`) : `text-${n}-${phase}`;
    sent.push(message);
    phases[phase] += 1;
    socket.send(message);
  };

  // Queued by the client before the session exists.
  for (let i = 0; i < 5; i++) send("beforeOpen");

  let pump;
  let transportAtOpen;
  socket.on("open", () => {
    transportAtOpen = socket.transport.name;
    for (let i = 0; i < 10; i++) send("polling");
    // Keep a stream going while the client probes and upgrades.
    pump = setInterval(() => {
      if (!upgraded) send(socket.upgrading ? "upgrading" : "polling");
    }, 1);
  });
  t.after(() => clearInterval(pump));
  socket.on("upgrading", () => {
    for (let i = 0; i < 10; i++) send("upgrading");
  });
  const upgrade = nextEvent(socket, "upgrade", 10_000);

  await opened(socket);
  const [transport] = await upgrade;
  upgraded = true;
  clearInterval(pump);
  assert.equal(transportAtOpen, "polling");
  assert.equal(transport.name, "websocket");
  assert.equal(socket.transport.name, "websocket");

  for (let i = 0; i < 20; i++) send("websocket");
  // A sentinel: anything duplicated would arrive before it.
  sent.push("sentinel");
  socket.send("sentinel");

  await box.waitFor(sent.length, 10_000);
  assert.deepEqual(box.items, sent.map(normalize));
  assert.ok(phases.beforeOpen > 0 && phases.polling > 0 && phases.upgrading > 0 && phases.websocket > 0,
    `every phase sent something: ${JSON.stringify(phases)}`);

  // Still one session, now on WebSocket, and it keeps echoing.
  assert.equal(await gw.connections(), 1);
  await assertEchoes(socket, box, ["after", Buffer.from([1, 2, 3])]);
  assert.equal(socket.transport.name, "websocket");
});

// ---------------------------------------------------------------------------
// 4. heartbeats

const FAST_HEARTBEAT = { pingIntervalMs: 300, pingTimeoutMs: 200 };

// engine.io-client closes a session that sees no ping within
// pingInterval + pingTimeout of the previous one, so the next ping must come
// pingInterval after the pong, not after the whole ping timeout.
test("heartbeat: the gateway pings every pingInterval when pongs come back at once", async (t) => {
  const { pingIntervalMs } = FAST_HEARTBEAT;
  const gw = await startGateway(t, FAST_HEARTBEAT);
  const ws = new WebSocket(`${gw.wsUrl()}?EIO=4&transport=websocket&access_token=${gw.token()}`);
  ws.on("error", () => {});
  t.after(() => ws.terminate());
  const pings = [];
  let closed = null;
  ws.on("close", (code) => (closed = code));
  ws.on("message", (data) => {
    if (data.toString() === "2") {
      pings.push(Date.now());
      ws.send("3");
    }
  });
  await waitUntil(() => pings.length >= 5 || closed !== null, { timeout: 5_000, message: "5 pings" });
  assert.equal(closed, null, "the connection stays open while pongs are sent");
  const gaps = pings.slice(1).map((at, i) => at - pings[i]);
  for (const gap of gaps) {
    assert.ok(gap <= pingIntervalMs + 100, `pings ${pingIntervalMs} ms apart, got gaps ${gaps.join(", ")} ms`);
  }
});

for (const transport of ["polling", "websocket"]) {
  test(`heartbeat: a ${transport} session answering pings stays open for several cycles`, async (t) => {
    const gw = await startGateway(t, FAST_HEARTBEAT);
    const socket = connect(gw, { transports: [transport], upgrade: false });
    const box = inbox(socket);
    let pings = 0;
    let closed = null;
    socket.on("ping", () => (pings += 1));
    socket.on("close", (reason, description) => (closed = `${reason} ${describe(description)}`));
    const handshake = nextEvent(socket, "handshake");
    await opened(socket);
    const [params] = await handshake;
    assert.equal(params.pingInterval, 300);
    assert.equal(params.pingTimeout, 200);
    const openedAt = Date.now();

    // 8 pings take at least 8 × 300 ms; fail early if the session dies.
    await waitUntil(() => pings >= 8 || closed, { timeout: 8_000, message: "8 pings" });
    assert.equal(closed, null, `session closed after ${Date.now() - openedAt} ms and ${pings} pings`);
    assert.ok(Date.now() - openedAt >= 2_000, "8 ping cycles last more than 2 s");
    assert.equal(socket.readyState, "open");
    assert.equal(socket.transport.name, transport);
    assert.equal(await gw.connections(), 1);
    await assertEchoes(socket, box, ["still alive"]);
  });
}

test("heartbeat: the gateway closes a websocket client that never answers pings", async (t) => {
  const { pingIntervalMs, pingTimeoutMs } = FAST_HEARTBEAT;
  const gw = await startGateway(t, FAST_HEARTBEAT);
  const ws = new WebSocket(`${gw.wsUrl()}?EIO=4&transport=websocket&access_token=${gw.token()}`);
  ws.on("error", () => {});
  t.after(() => ws.terminate());
  const frames = [];
  ws.on("message", (data, isBinary) => frames.push(isBinary ? data : data.toString()));
  const closed = nextEvent(ws, "close", pingIntervalMs + pingTimeoutMs + 3_000);

  await nextEvent(ws, "open");
  const openedAt = Date.now();
  await waitUntil(() => frames.length >= 1, { message: "the open packet" });
  assert.match(frames[0], /^0\{/);
  assert.equal(JSON.parse(frames[0].slice(1)).pingInterval, pingIntervalMs);
  await gw.waitForConnections(1);

  const [code] = await closed;
  const elapsed = Date.now() - openedAt;
  assert.ok(frames.includes("2"), `a ping was sent before the close: ${JSON.stringify(frames)}`);
  assert.ok(!frames.slice(1).some((f) => f !== "2"), `only pings were sent: ${JSON.stringify(frames)}`);
  assert.ok(elapsed >= pingIntervalMs + pingTimeoutMs - 100,
    `closed after the ping timeout, not before (${elapsed} ms, code ${code})`);
  assert.ok(elapsed <= pingIntervalMs + pingTimeoutMs + 1_500, `closed in time (${elapsed} ms)`);
  await gw.waitForConnections(0);
});

test("heartbeat: the gateway ends a polling session that stops polling", async (t) => {
  const gw = await startGateway(t, FAST_HEARTBEAT);
  const { sid } = await pollingHandshake(gw);
  await gw.waitForConnections(1);
  // No poll, no pong: the session must time out (interval + timeout = 500 ms).
  await gw.waitForConnections(0, 3_000);
  const response = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling&sid=${sid}`);
  assert.equal(response.status, 400);
  assert.equal((await response.json()).code, 1);
});

// ---------------------------------------------------------------------------
// 5. close, both directions

for (const transport of ["polling", "websocket"]) {
  test(`close: client socket.close() on ${transport} ends the session at the gateway`, async (t) => {
    const gw = await startGateway(t);
    const socket = connect(gw, { transports: [transport], upgrade: false });
    await opened(socket);
    await gw.waitForConnections(1);
    const closed = nextEvent(socket, "close");
    socket.close();
    const [reason] = await closed;
    assert.equal(reason, "forced close");
    await gw.waitForConnections(0);
  });

  test(`close: the gateway closes a ${transport} engine.io-client that stops answering pings`, async (t) => {
    const gw = await startGateway(t, FAST_HEARTBEAT);
    const socket = connect(gw, { transports: [transport], upgrade: false });
    await opened(socket);
    await gw.waitForConnections(1);
    stopAnsweringPings(socket);
    const stoppedAt = Date.now();
    const [reason, description] = await nextEvent(socket, "close", 5_000);
    const elapsed = Date.now() - stoppedAt;
    // "ping timeout" would mean the client gave up on its own: the gateway
    // must be the one closing (its deadline is earlier).
    assert.ok(["transport close", "transport error"].includes(reason),
      `closed by the server, got "${reason}" (${describe(description)}) after ${elapsed} ms`);
    await gw.waitForConnections(0);
  });
}

// ---------------------------------------------------------------------------
// 6. maxPayload

test("maxPayload: an oversized websocket message closes only that client", async (t) => {
  const gw = await startGateway(t, { maxPayload: 1000 });
  const victim = connect(gw, { transports: ["websocket"] });
  const bystander = connect(gw, { transports: ["websocket"] });
  const bystanderBox = inbox(bystander);
  const handshake = nextEvent(victim, "handshake");
  await Promise.all([opened(victim), opened(bystander)]);
  assert.equal((await handshake)[0].maxPayload, 1000);
  await gw.waitForConnections(2);

  // Under the limit is fine.
  const victimBox = inbox(victim);
  await assertEchoes(victim, victimBox, ["y".repeat(900)]);

  const closed = nextEvent(victim, "close");
  victim.send("z".repeat(2000));
  const [reason] = await closed;
  assert.equal(reason, "transport close");

  await gw.waitForConnections(1);
  assert.ok(gw.running, "the gateway is still running");
  await assertEchoes(bystander, bystanderBox, ["still here", Buffer.from([4, 2])]);
});

test("maxPayload: an oversized polling POST gets 413 and ends the session", async (t) => {
  const gw = await startGateway(t, { maxPayload: 1000 });
  const token = gw.token();
  const open = await pollingHandshake(gw, token);
  assert.equal(open.maxPayload, 1000);
  await gw.waitForConnections(1);
  const url = `${gw.hubUrl()}?EIO=4&transport=polling&sid=${open.sid}&access_token=${token}`;

  const ok = await fetch(url, { method: "POST", body: `4${"a".repeat(900)}`, headers: { "content-type": "text/plain;charset=UTF-8" } });
  assert.equal(ok.status, 200, await ok.text());

  const response = await fetch(url, { method: "POST", body: `4${"x".repeat(1999)}`, headers: { "content-type": "text/plain;charset=UTF-8" } });
  assert.equal(response.status, 413);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  const body = await response.json();
  assert.equal(typeof body.code, "number");
  assert.equal(typeof body.message, "string");
  assert.ok(body.message.length > 0);

  await gw.waitForConnections(0);
  const poll = await fetch(url);
  assert.equal(poll.status, 400);
  assert.equal((await poll.json()).code, 1);
});

test("maxPayload: engine.io-client on polling is closed after an oversized message", async (t) => {
  const gw = await startGateway(t, { maxPayload: 1000 });
  const victim = connect(gw, { transports: ["polling"], upgrade: false });
  const bystander = connect(gw, { transports: ["polling"], upgrade: false });
  const bystanderBox = inbox(bystander);
  await Promise.all([opened(victim), opened(bystander)]);
  await gw.waitForConnections(2);

  const closed = nextEvent(victim, "close");
  victim.send("z".repeat(2000));
  await closed;
  await gw.waitForConnections(1);
  await assertEchoes(bystander, bystanderBox, ["still here"]);
});

// ---------------------------------------------------------------------------
// 7. refusal

const BAD_TOKENS = {
  missing: () => null,
  "signed with another key": (gw) => gw.token({ key: "not-the-access-key" }),
  expired: (gw) => gw.token({ expiresInSeconds: -600 }),
  "for another hub": (gw) => gw.token({ hub: "other" }),
  garbage: () => "not.a.jwt",
};

for (const [kind, makeToken] of Object.entries(BAD_TOKENS)) {
  test(`refusal: a handshake with a ${kind} token gets 401 and no session`, async (t) => {
    const gw = await startGateway(t);
    const token = makeToken(gw);

    const query = token === null ? "" : `&access_token=${encodeURIComponent(token)}`;
    const response = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling${query}`);
    assert.equal(response.status, 401);
    assert.match(response.headers.get("content-type") ?? "", /application\/json/);
    const body = await response.json();
    assert.equal(body.code, 4);
    assert.equal(typeof body.message, "string");
    assert.ok(body.message.length > 0);

    for (const transports of [["polling"], ["websocket"], undefined]) {
      const socket = connect(gw, { token, transports });
      const error = nextEvent(socket, "error");
      const [reason] = await nextEvent(socket, "close");
      const [err] = await error;
      assert.equal(reason, "transport error", `transports ${transports}`);
      if (transports?.[0] !== "websocket") {
        assert.equal(err.message, "xhr poll error");
        assert.equal(err.description, 401);
      } else {
        assert.equal(err.message, "websocket error");
      }
      assert.notEqual(socket.readyState, "open");
    }
    assert.equal(await gw.connections(), 0);
  });
}

test("refusal: a valid token for a hub without an application gets 503 naming the hub", async (t) => {
  const gw = await startGateway(t, { echoHubs: ["echo"] });
  const token = gw.token({ hub: "lonely" });
  const response = await fetch(`${gw.hubUrl("lonely")}?EIO=4&transport=polling&access_token=${token}`);
  assert.equal(response.status, 503);
  const body = await response.json();
  assert.equal(typeof body.code, "number");
  assert.match(body.message, /lonely/);

  for (const transports of [["polling"], ["websocket"]]) {
    const socket = connect(gw, { hub: "lonely", token, transports });
    const error = nextEvent(socket, "error");
    const [reason] = await nextEvent(socket, "close");
    const [err] = await error;
    assert.equal(reason, "transport error");
    if (transports[0] === "polling") assert.equal(err.description, 503);
  }
  assert.equal(await gw.connections(), 0);
  // The echo hub of the same gateway still works.
  const socket = connect(gw);
  await opened(socket);
  await gw.waitForConnections(1);
});

// ---------------------------------------------------------------------------
// 8. CORS

test("CORS: polling requests echo the Origin, without credentials by default; preflight answers 204", async (t) => {
  const gw = await startGateway(t);
  const origin = "http://app.example";
  const token = gw.token();

  const handshake = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling&access_token=${token}`, {
    headers: { Origin: origin },
  });
  assert.equal(handshake.status, 200);
  assert.equal(handshake.headers.get("access-control-allow-origin"), origin);
  assert.equal(handshake.headers.get("access-control-allow-credentials"), null);
  const { sid } = JSON.parse((await handshake.text()).slice(1));

  // Later requests of the session repeat its token, as engine.io-client does.
  const post = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling&sid=${sid}&access_token=${token}`, {
    method: "POST",
    body: "4cors",
    headers: { Origin: origin, "content-type": "text/plain;charset=UTF-8" },
  });
  assert.equal(post.status, 200);
  assert.equal(post.headers.get("access-control-allow-origin"), origin);
  assert.equal(post.headers.get("access-control-allow-credentials"), null);

  const poll = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling&sid=${sid}&access_token=${token}`, {
    headers: { Origin: origin },
  });
  assert.equal(poll.status, 200);
  assert.equal(poll.headers.get("access-control-allow-origin"), origin);
  assert.equal(poll.headers.get("access-control-allow-credentials"), null);
  assert.equal(await poll.text(), "4cors");

  // A refusal is readable by the page too.
  const refused = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling`, { headers: { Origin: origin } });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get("access-control-allow-origin"), origin);

  const preflight = await fetch(`${gw.hubUrl()}?EIO=4&transport=polling`, {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type",
    },
  });
  assert.equal(preflight.status, 204);
  const methods = (preflight.headers.get("access-control-allow-methods") ?? "").split(/\s*,\s*/);
  assert.ok(methods.includes("GET") && methods.includes("POST"), `allow-methods: ${methods}`);
  assert.equal(preflight.headers.get("access-control-allow-origin"), origin);
  assert.equal(preflight.headers.get("access-control-allow-credentials"), null);
  assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /content-type/i);
});

test("CORS: configured origins get credentials, other origins get no CORS headers", async (t) => {
  const allowed = "http://app.example";
  const gw = await startGateway(t, { args: ["--allowed-origin", allowed] });
  const url = `${gw.hubUrl()}?EIO=4&transport=polling&access_token=${gw.token()}`;

  const ok = await fetch(url, { headers: { Origin: allowed } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), allowed);
  assert.equal(ok.headers.get("access-control-allow-credentials"), "true");

  const other = await fetch(url, { headers: { Origin: "http://evil.example" } });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  assert.equal(other.headers.get("access-control-allow-credentials"), null);
});
