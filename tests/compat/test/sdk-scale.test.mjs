// Two application server processes (the official SDK) on one hub of the
// real gateway: new clients are spread across both, each client's events
// reach the process that accepted it, broadcasts from either reach all; then
// one process is killed: its clients are disconnected (and reconnect through
// the other), the other process's clients are undisturbed.

import { test } from "node:test";
import assert from "node:assert/strict";

import { startGateway, waitUntil } from "./support/gateway.mjs";
import { connectClient, connected, emitAck, sdkConnectionString, startSdkApp } from "./support/sdk-app.mjs";
import { barrier } from "./support/sdk-helpers.mjs";

const HUB = "scale";
const CLIENTS = 8;
// The gateway closes a gone server's clients after a grace period
// (--server-grace-ms, default 30 s); the test shortens it.
const GRACE_MS = 2_000;
const GONE_TIMEOUT_MS = GRACE_MS + 20_000;

test("two app servers on one hub; one killed", { timeout: 120_000 }, async (t) => {
  const gateway = await startGateway(t, { args: ["--server-grace-ms", String(GRACE_MS)] });
  // Both documented connection string forms: Port= and the printed one.
  const appA = await startSdkApp(t, gateway, { hub: HUB, name: "A", connectionString: sdkConnectionString(gateway) });
  const appB = await startSdkApp(t, gateway, { hub: HUB, name: "B", connectionString: gateway.connectionString });
  const apps = { A: appA, B: appB };

  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    // Tokens from either app's negotiate are equally good.
    const s = await connectClient(t, i % 2 ? appB : appA, {
      username: `u${i}`,
      reconnection: true,
      reconnectionDelay: 200,
      reconnectionDelayMax: 1_000,
      randomizationFactor: 0,
    });
    await connected(s);
    clients.push(s);
  }

  // Who accepted whom.
  const owner = new Map();
  for (const s of clients) {
    const info = await emitAck(s, "whichapp");
    assert.equal(info.id, s.id);
    owner.set(s, info.app);
  }
  const ofA = clients.filter((s) => owner.get(s) === "A");
  const ofB = clients.filter((s) => owner.get(s) === "B");
  assert.ok(ofA.length >= 1 && ofB.length >= 1, `clients not spread: A has ${ofA.length}, B has ${ofB.length}`);

  // Every event of a client reaches the process that accepted it, only it.
  for (const s of clients) {
    for (let k = 0; k < 5; k++) s.emit("note", k);
  }
  for (const s of clients) {
    const mine = apps[owner.get(s)];
    const other = apps[owner.get(s) === "A" ? "B" : "A"];
    const notes = await mine.waitForCount("event", { id: s.id, event: "note" }, 5);
    assert.deepEqual(
      notes.map((r) => r.args[0]),
      [0, 1, 2, 3, 4],
    );
    assert.equal(mine.seen("connection", { id: s.id }).length, 1);
    assert.equal(other.seen("connection", { id: s.id }).length, 0);
    assert.equal(other.seen("event", { id: s.id }).length, 0);
  }

  // A broadcast from either process reaches every client of the hub.
  // `emit` answers once the SDK has queued the REST call, not once the
  // gateway has it: B emits after every client has A's broadcast, so the
  // order checked below is the order of the two calls at the gateway.
  await appA.command("emit", { target: {}, event: "from", args: ["A"] });
  await Promise.all(clients.map((s) => s.inbox.waitFor("from", 1)));
  await appB.command("emit", { target: {}, event: "from", args: ["B"] });
  await Promise.all(clients.map((s) => s.inbox.waitFor("from", 2)));
  for (const s of clients) {
    assert.deepEqual(s.inbox.of("from").map((a) => a[0]), ["A", "B"]);
  }
  // A room joined through A is reachable from B.
  const [a0] = ofA;
  await emitAck(a0, "join", "shared-room");
  await appB.command("emit", { target: { to: "shared-room" }, event: "via-B", args: [1] });
  await a0.inbox.waitFor("via-B");
  // Broadcast with acks from B collects answers from A's clients too.
  for (const s of clients) s.on("ask", (q, cb) => cb(`${s.id}:${q}`));
  const acks = await appB.command("emitWithAck", { target: { timeout: 5_000 }, event: "ask", args: ["all"] });
  assert.equal(acks.err, null);
  assert.equal(acks.responses.length, CLIENTS);

  // Kill B.
  const disconnectsOfA = () => ofA.flatMap((s) => s.inbox.items.filter((i) => i.event === "$disconnect"));
  await appB.kill("SIGKILL");

  // B's clients are disconnected by the gateway…
  await waitUntil(() => ofB.every((s) => s.inbox.items.some((i) => i.event === "$disconnect")), {
    timeout: GONE_TIMEOUT_MS,
    message: "the gateway to disconnect the killed server's clients",
  });
  // …and reconnect through A (socket.io-client reconnection, same token).
  await Promise.all(ofB.map((s) => waitUntil(() => s.connected, { timeout: 15_000, message: `client to reconnect` })));
  for (const s of ofB) {
    const info = await emitAck(s, "whichapp");
    assert.equal(info.app, "A", "a reconnected client is served by the surviving server");
  }

  // A's clients were never disturbed and still work.
  assert.deepEqual(disconnectsOfA(), []);
  for (const s of ofA) assert.equal((await emitAck(s, "whichapp")).app, "A");
  await barrier(appA, clients);
  assert.deepEqual(disconnectsOfA(), []);
  assert.equal(await gateway.connections(), CLIENTS);
  // The killed app's connections were accounted for: A saw only its own
  // clients' disconnects (none so far).
  assert.equal(appA.seen("disconnect").length, 0);
});
