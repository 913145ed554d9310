// The official server SDK (child process) with real socket.io-client clients
// through the real gateway: ordering under a burst of 1,000 messages (per
// connection both ways, and broadcast), and polling-only, websocket-only and
// upgrading clients.

import { test } from "node:test";
import assert from "node:assert/strict";

import { nextEvent } from "./support/gateway.mjs";
import { connectClient, connected, emitAck } from "./support/sdk-app.mjs";
import { emitAckAll, normalize, setup } from "./support/sdk-helpers.mjs";

const BURST = 1_000;
const BURST_TIMEOUT_MS = 30_000;
const seq = (n) => Array.from({ length: n }, (_, i) => i);

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  const label = transports.join("+");

  test(`ordering (${label}): 1,000 messages per connection both ways and 1,000 broadcasts arrive in order`, async (t) => {
    const { app, sockets } = await setup(t, { clients: 3, client: { transports } });
    const [a, b, c] = sockets;

    // server → one client: socket.emit × 1000
    await app.command("burst", { target: { socket: a.id }, event: "seq", count: BURST });
    const got = await a.inbox.waitFor("seq", BURST, BURST_TIMEOUT_MS);
    assert.deepEqual(
      got.map((args) => args[0]),
      seq(BURST),
    );

    // client → server: 1000 emits, received by the app in order
    for (let i = 0; i < BURST; i++) b.emit("up", i);
    const up = await app.waitForCount("event", { id: b.id, event: "up" }, BURST, BURST_TIMEOUT_MS);
    assert.deepEqual(
      up.map((r) => r.args[0]),
      seq(BURST),
    );

    // broadcast: io.emit × 1000 to every client
    await app.command("burst", { target: {}, event: "all", count: BURST });
    for (const s of sockets) {
      const all = await s.inbox.waitFor("all", BURST, BURST_TIMEOUT_MS);
      assert.deepEqual(
        all.map((args) => args[0]),
        seq(BURST),
        `broadcast order at ${s.id}`,
      );
    }

    // interleaved room and namespace broadcasts keep their relative order
    // (per-socket emits are not mixed in: the SDK itself sends those through
    // the socket's Engine.IO transport, one :send at a time, so it does not
    // order them against broadcasts)
    await emitAck(c, "join", "r");
    const mixed = [];
    for (let i = 0; i < 200; i++) {
      mixed.push(app.command("emit", { target: i % 2 ? { to: "r" } : {}, event: "mixed", args: [i] }));
    }
    await Promise.all(mixed);
    const m = await c.inbox.waitFor("mixed", 200, BURST_TIMEOUT_MS);
    assert.deepEqual(
      m.map((args) => args[0]),
      seq(200),
    );
  });
}

test("polling-only client: connects, emits, acks, binary, never upgrades", async (t) => {
  const { app, sockets } = await setup(t, { clients: 1, client: { transports: ["polling"] } });
  const [s] = sockets;
  assert.equal(s.io.engine.transport.name, "polling");
  assert.equal(await emitAck(s, "echo", "p"), "p");
  assert.deepEqual(normalize(await emitAckAll(s, "echo", Buffer.from([1, 2]))), normalize([Buffer.from([1, 2])]));
  await app.command("emit", { target: { socket: s.id }, event: "pushed", args: ["x"] });
  await s.inbox.waitFor("pushed");
  assert.equal(s.io.engine.transport.name, "polling");
});

test("websocket-only client: the open packet comes over the WebSocket, everything works", async (t) => {
  const { app, sockets } = await setup(t, { clients: 1, client: { transports: ["websocket"] } });
  const [s] = sockets;
  assert.equal(s.io.engine.transport.name, "websocket");
  assert.equal(await emitAck(s, "echo", "w"), "w");
  assert.deepEqual(normalize(await emitAckAll(s, "echo", Buffer.from([3]))), normalize([Buffer.from([3])]));
  await app.command("emit", { target: { socket: s.id }, event: "pushed", args: ["y"] });
  await s.inbox.waitFor("pushed");
});

test("upgrading client: polling → websocket, with traffic across the upgrade", async (t) => {
  const { gateway, app } = await setup(t);
  const s = await connectClient(t, app, { username: "up" });
  // The engine is created synchronously; catch its upgrade from the start.
  const upgraded = nextEvent(s.io.engine, "upgrade", 10_000);
  assert.equal(s.io.engine.transport.name, "polling");
  // traffic both ways from the start (buffered until connected), so some of
  // it crosses the upgrade
  const during = Promise.all(seq(50).map((i) => emitAck(s, "echo", i)));
  await connected(s);
  const [transport] = await upgraded;
  assert.equal(transport.name, "websocket");
  assert.deepEqual(await during, seq(50));
  assert.equal(s.io.engine.transport.name, "websocket");
  assert.equal(await emitAck(s, "echo", "after upgrade"), "after upgrade");
  await app.command("burst", { target: { socket: s.id }, event: "seq", count: 100 });
  const got = await s.inbox.waitFor("seq", 100, 10_000);
  assert.deepEqual(
    got.map((a) => a[0]),
    seq(100),
  );
  assert.equal(await gateway.connections(), 1);
  assert.equal(app.seen("eio-connection").length, 1);
});
