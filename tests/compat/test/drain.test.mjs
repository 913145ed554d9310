// Graceful drain with real clients: gateway A and gateway B (same access key)
// behind a small TCP proxy that stands for the load balancer. Clients
// (socket.io-client over WebSocket, polling, and polling upgraded to
// WebSocket) and application server "appA" (the official SDK) reach the
// gateways through the proxy; "appB" is attached to B directly. On SIGTERM,
// A turns not ready (the proxy then sends everything to B, as a load
// balancer watching /ready would), refuses new handshakes with 503, closes
// its clients in batches with an Engine.IO-level close, so every client
// sees "transport close" (never "io server disconnect", which would stop its
// reconnection) and reconnects, through the proxy, to B; A tells appA's
// tunnel to reconnect, which the SDK does, through the proxy, to B; A exits
// by itself before its drain timeout.

import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";

import { startGateway, waitUntil, withTimeout } from "./support/gateway.mjs";
import { connectClient, connected, emitAck, startSdkApp } from "./support/sdk-app.mjs";

const HUB = "sdk";
const CLIENTS = 9;
const DRAIN_PERIOD_MS = 3_000;
const DRAIN_TIMEOUT_MS = 15_000;

/** A TCP proxy on a free port to `upstream` (a port), switchable. */
async function startProxy(t, upstream) {
  const connections = new Set();
  const proxy = {
    upstream,
    server: net.createServer((client) => {
      const target = net.connect(proxy.upstream, "127.0.0.1");
      connections.add(client);
      connections.add(target);
      client.pipe(target);
      target.pipe(client);
      const end = () => {
        client.destroy();
        target.destroy();
        connections.delete(client);
        connections.delete(target);
      };
      client.on("error", end).on("close", end);
      target.on("error", end).on("close", end);
    }),
  };
  await new Promise((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
  proxy.port = proxy.server.address().port;
  t.after(() => {
    for (const socket of connections) socket.destroy();
    proxy.server.close();
  });
  return proxy;
}

test("drain: clients and the SDK's tunnel reconnect to another gateway", { timeout: 90_000 }, async (t) => {
  const a = await startGateway(t, {
    echoHubs: [],
    drainPeriodMs: DRAIN_PERIOD_MS,
    args: ["--drain-timeout-ms", String(DRAIN_TIMEOUT_MS)],
  });
  const b = await startGateway(t, { echoHubs: [] });
  const proxy = await startProxy(t, a.port);
  const throughProxy = `Endpoint=http://127.0.0.1;Port=${proxy.port};AccessKey=${a.accessKey};Version=1.0;`;
  const appA = await startSdkApp(t, a, { hub: HUB, name: "appA", connectionString: throughProxy });
  const appB = await startSdkApp(t, b, { hub: HUB, name: "appB" });

  const transports = [["websocket"], ["polling"], ["polling", "websocket"]];
  const sockets = [];
  for (let i = 0; i < CLIENTS; i++) {
    const socket = await connectClient(t, appA, {
      username: `c${i}`,
      transports: transports[i % transports.length],
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
    });
    socket.reasons = [];
    socket.connects = 0;
    socket.on("disconnect", (reason) => socket.reasons.push(reason));
    socket.on("connect", () => socket.connects++);
    sockets.push(socket);
  }
  await Promise.all(sockets.map((s) => connected(s)));
  for (const s of sockets) assert.equal((await emitAck(s, "whichapp")).app, "appA");
  await waitUntil(() => sockets.every((s) => s.io.engine.transport.name === transports[sockets.indexOf(s) % 3].at(-1)), {
    message: "every client on its final transport",
  });
  assert.equal(await a.connections(), CLIENTS);

  const signalled = Date.now();
  a.child.kill("SIGTERM");
  await waitUntil(async () => (await fetch(`${a.baseUrl}/ready`)).status === 503, {
    timeout: 2_000,
    interval: 5,
    message: "A's /ready to turn 503",
  });
  // The load balancer takes A out.
  proxy.upstream = b.port;
  const ready = await fetch(`${a.baseUrl}/ready`);
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).status, "draining");
  const refused = await fetch(`${a.hubUrl(HUB)}?EIO=4&transport=polling&access_token=${a.token({ hub: HUB })}`);
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "1");

  // Every client is closed and reconnects, now to B.
  await b.waitForConnections(CLIENTS, DRAIN_PERIOD_MS + 10_000);
  await waitUntil(() => sockets.every((s) => s.connected && s.connects === 2), {
    timeout: 10_000,
    message: "every client reconnected once",
  });
  // Every client saw the close itself ("transport close"; a polling client
  // closed between two polls gets the close packet on its next poll), never
  // "io server disconnect", which would have stopped its reconnection.
  for (const s of sockets) {
    assert.deepEqual(s.reasons, ["transport close"], `client ${s.sid}`);
  }

  // A exits by itself, before its deadline.
  const exit = await withTimeout(a.exited, DRAIN_TIMEOUT_MS, "A to exit");
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - signalled < DRAIN_TIMEOUT_MS, "A exited before its drain timeout");

  // The clients are served on B (by appB, or appA once its tunnel is back).
  for (const s of sockets) assert.ok(["appA", "appB"].includes((await emitAck(s, "whichapp")).app));
  assert.equal(await b.connections(), CLIENTS);

  // appA's tunnel was told to reconnect and did, through the proxy, to B:
  // new clients there are spread over appA and appB.
  const seen = new Set();
  await waitUntil(
    async () => {
      const c = await connectClient(t, appB, { username: "late" });
      await connected(c);
      seen.add((await emitAck(c, "whichapp")).app);
      c.disconnect();
      return seen.has("appA");
    },
    { timeout: 15_000, interval: 100, message: "a new client on B served by appA" },
  );
});
