// Cluster mode end to end: three real gateway nodes sharing a real Redis,
// behind a real HAProxy balancing every request round-robin with no
// affinity, an application server attached by the official SDK through the
// load balancer (its tunnel lands on one node; that node's rebalances make
// the SDK open a tunnel to each other node), and real socket.io-client
// clients through the load balancer on every transport: rooms, broadcasts
// (in order, 1,000 at a time), acks both ways and across nodes, joins that
// hold for the next broadcast, a node that dies. Plus the REST API of one
// node reaching the clients of the others.
//
// And, apart from any application server: the gateway's built-in echo hub
// through the load balancer, which needs the nodes' forwarding only.
//
// Skipped, with the reason, when HAProxy or Redis is missing here; CI
// installs both (scripts/install-deps, scripts/redis ensure).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import { Socket } from "engine.io-client";

import { nextEvent, waitUntil, withTimeout } from "./support/gateway.mjs";
import { clusterUnavailable, startCluster } from "./support/cluster.mjs";
import { connectClient, connected, emitAck, negotiateWith, startSdkApp } from "./support/sdk-app.mjs";

const require = createRequire(import.meta.url);
const { WebPubSubServiceClient } = require("@azure/web-pubsub");

const HUB = "cluster";
const CLIENTS = 6;

/** waitUntil, with `describe()` (evaluated at the deadline) in the error. */
async function waitOrExplain(probe, timeout, describe) {
  try {
    await waitUntil(probe, { timeout, message: "condition" });
  } catch {
    throw new Error(`timed out after ${timeout} ms waiting for ${describe()}`);
  }
}

/** Skips `t` (and returns true) when the cluster cannot run here. */
async function skipped(t) {
  const reason = await clusterUnavailable();
  if (reason) t.skip(reason);
  return reason !== null;
}

/** Three nodes, HAProxy, and the SDK app attached through HAProxy. */
async function setup(t) {
  const cluster = await startCluster(t, { nodes: 3 });
  const app = await startSdkApp(t, cluster.gatewayLike, {
    hub: HUB,
    connectionString: cluster.connectionString(),
  });
  await servedEverywhere(t, cluster, app);
  return { cluster, app };
}

/**
 * Waits until a client connected straight to each node reaches the app: the
 * app's own tunnel reaches one node, so the others serve its clients only
 * once the SDK followed their rebalances.
 */
async function servedEverywhere(t, cluster, app) {
  const negotiated = await negotiateWith(app, { query: { username: "probe" } });
  for (const node of cluster.nodes) {
    await waitUntil(
      async () => {
        const socket = await connectClient(t, app, {
          negotiated: { ...negotiated, endpoint: node.url },
          transports: ["websocket"],
          timeout: 2_000,
        });
        try {
          await connected(socket, 2_000);
          return true;
        } catch {
          return false;
        } finally {
          socket.disconnect();
        }
      },
      {
        timeout: 20_000,
        interval: 200,
        message: `a client of node ${node.index} (${node.url}) to reach the app through the SDK's rebalanced tunnel\n${cluster.logs()}\napp output:\n${app.output}`,
      },
    );
  }
}

/** `count` clients through the load balancer, connected and seen by the app. */
async function clientsThroughLb(t, app, count, options) {
  const sockets = [];
  for (let i = 0; i < count; i++) {
    sockets.push(await connectClient(t, app, { username: `user${i}`, ...options }));
  }
  await Promise.all(sockets.map((s) => connected(s)));
  await Promise.all(sockets.map((s) => app.waitFor("connection", { id: s.id }, 10_000)));
  return sockets;
}

/**
 * The scenario of each transport: the clients join a room (all but the
 * last), receive the app's room broadcast (the last does not), events
 * round-trip with acks, and the app reaches each client directly.
 */
async function scenario(t, transports, { upgrade = false } = {}) {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const before = await cluster.lbRequests();
  const options = transports ? { transports } : {};
  const sockets = await clientsThroughLb(t, app, CLIENTS, options);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;

  if (upgrade) {
    await waitUntil(() => sockets.every((s) => s.io.engine.transport.name === "websocket"), {
      timeout: 10_000,
      message: `every client upgraded to websocket (have ${sockets.map((s) => s.io.engine.transport.name).join(",")})${diagnose()}`,
    });
  }
  for (const s of sockets) {
    const expected = transports?.length === 1 ? transports[0] : "websocket";
    assert.equal(s.io.engine.transport.name, expected, `client ${s.id} transport`);
  }

  // Join a room (the app's handler acks with the socket's rooms).
  const members = sockets.slice(0, -1);
  const outsider = sockets.at(-1);
  for (const s of members) {
    const rooms = await withTimeout(emitAck(s, "join", "blue"), 10_000, `join of ${s.id}${diagnose()}`);
    assert.ok(rooms.includes("blue"), `rooms of ${s.id}: ${JSON.stringify(rooms)}`);
  }

  // A room broadcast from the app reaches the members on every node, then a
  // broadcast to all (sent after it) reaches everyone: the outsider, which
  // has it, never had the room's.
  const news = randomUUID();
  await app.command("emit", { target: { to: "blue" }, event: "news", args: [news] });
  await app.command("emit", { target: {}, event: "marker", args: [news] });
  for (const s of sockets) {
    await withTimeout(s.inbox.waitFor("marker", 1, 12_000), 10_000, `marker at ${s.id}${diagnose()}`);
  }
  for (const s of members) {
    await withTimeout(s.inbox.waitFor("news", 1, 12_000), 10_000, `room news at ${s.id} (session ${s.io.engine.id})${diagnose()}`);
    assert.deepEqual(s.inbox.of("news"), [[news]], `room news at ${s.id}`);
  }
  assert.deepEqual(outsider.inbox.of("news"), [], "the client outside the room got no room news");

  // Events round-trip (client → app → ack), several per client: with
  // polling each request may land on another node.
  for (const s of sockets) {
    for (let i = 0; i < 5; i++) {
      const answer = await withTimeout(emitAck(s, "echo", `${s.id}:${i}`), 10_000, `echo ${i} of ${s.id}${diagnose()}`);
      assert.equal(answer, `${s.id}:${i}`);
    }
  }
  // The app reaches each client directly.
  for (const s of sockets) {
    await app.command("emit", { target: { socket: s.id }, event: "direct", args: [s.id] });
  }
  for (const s of sockets) {
    await withTimeout(s.inbox.waitFor("direct", 1, 12_000), 10_000, `direct emit to ${s.id}${diagnose()}`);
    assert.deepEqual(s.inbox.of("direct"), [[s.id]]);
  }
  // The clients' requests were spread over every node (round-robin, no
  // affinity): with polling, many requests of each session went to nodes
  // that do not hold it.
  const after = await cluster.lbRequests();
  const spread = after.map((n, i) => n - before[i]);
  // A WebSocket is one request; an upgrade some four; polling, dozens.
  const least = transports === undefined ? 3 : transports[0] === "websocket" ? 1 : 10;
  t.diagnostic(`requests per node through the load balancer: ${spread.join(", ")}`);
  assert.ok(
    spread.every((n) => n >= least),
    `requests per node through the load balancer: ${spread.join(", ")} (expected at least ${least} each)`,
  );
}

test("cluster: polling only, through the load balancer", async (t) => {
  await scenario(t, ["polling"]);
});

test("cluster: WebSocket only, through the load balancer", async (t) => {
  await scenario(t, ["websocket"]);
});

test("cluster: polling then upgrade, through the load balancer", async (t) => {
  await scenario(t, undefined, { upgrade: true });
});

test("cluster: a room joined (and acknowledged) is in force for the app's next room broadcast, round after round", async (t) => {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;
  const sockets = await clientsThroughLb(t, app, CLIENTS, { transports: ["websocket"] });
  // socket.join() resolves once the SDK's :addToGroups call was answered;
  // the app acks the client after that, and only then broadcasts to the
  // room (through whichever of its tunnels the SDK picks).
  for (let round = 0; round < 20; round++) {
    const room = `round-${round}`;
    await Promise.all(sockets.map((s) => withTimeout(emitAck(s, "join", room), 10_000, `join ${room} of ${s.id}${diagnose()}`)));
    await app.command("emit", { target: { to: room }, event: "round", args: [round] });
    for (const s of sockets) {
      await withTimeout(s.inbox.waitFor("round", round + 1, 12_000), 10_000, `round ${round} at ${s.id} (session ${s.io.engine.id}, has ${JSON.stringify(s.inbox.of("round"))})${diagnose()}`);
    }
  }
  for (const s of sockets) {
    assert.deepEqual(s.inbox.of("round"), Array.from({ length: 20 }, (_, i) => [i]), `rounds at ${s.id}`);
  }
});

test("cluster: 1,000 emits to one socket and 1,000 broadcasts arrive in order on every node", async (t) => {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;
  // One client straight on each node: the SDK sends each emit to a socket
  // on any of its tunnels (it awaits one's answer before the next), so
  // most of them reach the socket's node through another node.
  const negotiated = await negotiateWith(app, { query: { username: "ordered" } });
  const sockets = [];
  for (const node of cluster.nodes) {
    const socket = await connectClient(t, app, { negotiated: { ...negotiated, endpoint: node.url }, transports: ["websocket"] });
    sockets.push(socket);
  }
  await Promise.all(sockets.map((s) => connected(s)));
  await Promise.all(sockets.map((s) => app.waitFor("connection", { id: s.id }, 10_000)));
  const BURST = 1_000;
  const seq = Array.from({ length: BURST }, (_, i) => i);
  for (const s of sockets) {
    await app.command("burst", { target: { socket: s.id }, event: "seq", count: BURST }, 60_000);
  }
  await app.command("burst", { target: {}, event: "all", count: BURST }, 60_000);
  const failures = [];
  for (const [i, s] of sockets.entries()) {
    const got = await withTimeout(s.inbox.waitFor("seq", BURST, 62_000), 60_000, `${BURST} emits at ${s.id}${diagnose()}`);
    const all = await withTimeout(s.inbox.waitFor("all", BURST, 62_000), 60_000, `${BURST} broadcasts at ${s.id}${diagnose()}`);
    for (const [what, list] of [["emits to it", got], ["broadcasts", all]]) {
      const values = list.map((args) => args[0]);
      const first = values.findIndex((v, k) => v !== k);
      if (first !== -1) {
        failures.push(
          `client of node ${i + 1}: ${what} out of order from position ${first}: ` +
            `${JSON.stringify(values.slice(Math.max(0, first - 3), first + 12))}…`,
        );
      }
    }
  }
  assert.deepEqual(failures, [], "every client gets each burst in order");
});

test("cluster: a broadcast with acks gathers the answers of the clients of every node", async (t) => {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;
  const negotiated = await negotiateWith(app, { query: { username: "acker" } });
  const sockets = [];
  for (const node of cluster.nodes) {
    const socket = await connectClient(t, app, { negotiated: { ...negotiated, endpoint: node.url }, transports: ["websocket"] });
    socket.on("question", (q, cb) => cb(`${q}:${node.index}`));
    sockets.push(socket);
  }
  await Promise.all(sockets.map((s) => connected(s)));
  await Promise.all(sockets.map((s) => app.waitFor("connection", { id: s.id }, 10_000)));
  // io.timeout().emitWithAck(): the SDK's :invoke, on whichever tunnel.
  const reply = await app.command("emitWithAck", { target: { timeout: 5_000 }, event: "question", args: ["q"] }, 15_000);
  assert.equal(reply.err, null, `emitWithAck failed: ${JSON.stringify(reply)}${diagnose()}`);
  assert.deepEqual([...reply.responses].sort(), ["q:1", "q:2", "q:3"]);
});

// TODO while it fails for a reason outside the gateway: the official SDK
// keeps reconnecting its tunnel to a dead node forever and still sends some
// of its calls there (random tunnel per call), where they are lost, so a
// namespace CONNECT answer or an emit now and then never arrives. It runs
// and reports; it does not fail the suite.
test("cluster: when a node dies, its clients come back through the load balancer and the app reaches them", async (t) => {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;
  const sockets = await clientsThroughLb(t, app, CLIENTS, {
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1_000,
  });
  const dead = cluster.nodes[2];
  const owner = (s) => s.io.engine.id.split(".")[0];
  const victims = sockets.filter((s) => owner(s) === dead.id);
  assert.ok(victims.length > 0, `round-robin put clients on node 3 (owners: ${sockets.map(owner).join(", ")})`);
  // What the victims' managers do: the Engine.IO session comes back at
  // once (HAProxy sends the new handshake to a live node); the namespace
  // CONNECT then needs the app's answer, a :send the SDK makes on any of its
  // tunnels. Its tunnel to the dead node reconnects through the load
  // balancer within the SDK's 2 s retry, and the node it lands on serves it
  // (the target is dead), so the SDK's calls reach the cluster again.
  const events = [];
  for (const s of victims) {
    const label = s.id;
    s.io.on("reconnect", () => events.push(`${label}: session back on ${s.io.engine.id.split(".")[0]}`));
    s.io.on("reconnect_error", (e) => events.push(`${label}: reconnect error ${e.message}`));
    s.on("connect", () => events.push(`${label}: namespace connected`));
  }
  dead.child.kill("SIGKILL");
  await withTimeout(dead.exited, 5_000, "node 3 to exit");
  // Its clients reconnect, through HAProxy, to the nodes alive.
  await waitOrExplain(
    () => victims.every((s) => s.connected && owner(s) !== dead.id),
    20_000,
    () =>
      `the clients of the dead node back on another node (owners: ${sockets.map((s) => (s.connected ? owner(s) : "-")).join(", ")}; ` +
      `disconnects: ${JSON.stringify(victims.map((s) => s.inbox.of("$disconnect")))}; since: ${events.join(" | ")})${diagnose()}`,
  );
  await Promise.all(sockets.map((s) => app.waitFor("connection", { id: s.id }, 10_000)));
  // The survivors count two nodes once the dead one misses its heartbeats.
  for (const node of cluster.nodes.slice(0, 2)) {
    await waitUntil(async () => (await node.health()).nodes === 2, {
      timeout: 15_000,
      message: `node ${node.index} to count 2 nodes${diagnose()}`,
    });
  }
  // 30 emits from the app to a client that never left a live node: each is
  // a :send on a tunnel the SDK picks at random.
  const survivor = sockets.find((s) => !victims.includes(s));
  for (let i = 0; i < 30; i++) {
    await app.command("emit", { target: { socket: survivor.id }, event: "after", args: [i] });
  }
  await waitOrExplain(
    () => survivor.inbox.of("after").length === 30,
    10_000,
    () => `30 emits after the death at a client of a live node (${survivor.inbox.of("after").length} arrived)${diagnose()}`,
  );
  const news = randomUUID();
  await app.command("emit", { target: {}, event: "news", args: [news] });
  for (const s of sockets) {
    await withTimeout(s.inbox.waitFor("news", 1, 12_000), 10_000, `the broadcast after the death at ${s.id}${diagnose()}`);
    const answer = await withTimeout(s.timeout(12_000).emitWithAck("echo", news), 10_000, `echo of ${s.id}${diagnose()}`);
    assert.equal(answer, news);
  }
});

test("cluster: the REST API of node 1 reaches the clients of nodes 2 and 3", async (t) => {
  if (await skipped(t)) return;
  const { cluster, app } = await setup(t);
  const diagnose = () => `\n${cluster.logs()}\napp output:\n${app.output}`;
  const negotiated = await negotiateWith(app, { query: { username: "direct" } });
  const [, node2, node3] = cluster.nodes;
  const on2 = await connectClient(t, app, { negotiated: { ...negotiated, endpoint: node2.url }, transports: ["websocket"] });
  const on3 = await connectClient(t, app, { negotiated: { ...negotiated, endpoint: node3.url }, transports: ["websocket"] });
  await Promise.all([connected(on2), connected(on3)]);
  const id2 = on2.io.engine.id;
  const id3 = on3.io.engine.id;

  const service = new WebPubSubServiceClient(cluster.connectionString(0), HUB, { allowInsecureConnection: true });
  const within = (promise, what) => withTimeout(promise, 10_000, `${what}${diagnose()}`);

  // To everyone.
  await within(service.sendToAll('42["rest","all"]', { contentType: "text/plain" }), "sendToAll");
  await within(on2.inbox.waitFor("rest", 1, 10_000), "sendToAll at node 2");
  await within(on3.inbox.waitFor("rest", 1, 10_000), "sendToAll at node 3");

  // To one connection of another node, and whether it exists.
  assert.equal(await within(service.connectionExists(id3), "connectionExists"), true, "node 1 knows a connection of node 3");
  await within(service.sendToConnection(id3, '42["rest","only3"]', { contentType: "text/plain" }), "sendToConnection");
  await within(on3.inbox.waitFor("rest", 2, 10_000), "sendToConnection at node 3");
  assert.deepEqual(on3.inbox.of("rest"), [["all"], ["only3"]]);

  // A group with a member on node 2 only.
  const group = service.group("ops");
  await within(group.addConnection(id2), "addConnection");
  await within(group.sendToAll('42["rest","group"]', { contentType: "text/plain" }), "group sendToAll");
  await within(service.sendToAll('42["rest","marker"]', { contentType: "text/plain" }), "marker");
  await within(on2.inbox.waitFor("rest", 3, 10_000), "group send and marker at node 2");
  await within(on3.inbox.waitFor("rest", 3, 10_000), "marker at node 3");
  assert.deepEqual(on2.inbox.of("rest"), [["all"], ["group"], ["marker"]]);
  assert.deepEqual(on3.inbox.of("rest"), [["all"], ["only3"], ["marker"]], "no group send outside the group");

  // Closing a connection of node 3 from node 1.
  await within(service.closeConnection(id3, { reason: "bye" }), "closeConnection");
  await waitUntil(() => !on3.connected, { timeout: 10_000, message: `the client of node 3 closed${diagnose()}` });
  assert.equal(on2.connected, true);
});

test("cluster: the echo hub through the load balancer on every transport, and a REST broadcast from node 1", async (t) => {
  if (await skipped(t)) return;
  const cluster = await startCluster(t, { nodes: 3, echoHubs: ["echo"] });
  const diagnose = () => `\n${cluster.logs()}`;
  const [node1] = cluster.nodes;
  const sockets = [];
  for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
    const socket = new Socket(cluster.lbUrl, {
      path: node1.path("echo"),
      query: { access_token: node1.token({ hub: "echo", user: `echo-${transports.join("-")}` }) },
      transports,
    });
    socket.label = transports.join("+");
    socket.messages = [];
    socket.on("message", (data) => socket.messages.push(String(data)));
    t.after(() => socket.close());
    await withTimeout(nextEvent(socket, "open", 10_000), 10_000, `open of ${socket.label}${diagnose()}`);
    sockets.push(socket);
  }
  const upgraded = sockets[2];
  await waitUntil(() => upgraded.transport.name === "websocket", {
    timeout: 10_000,
    message: `the upgrade through the load balancer${diagnose()}`,
  });
  // Echoes, in order, over requests that land on every node in turn.
  for (const socket of sockets) {
    const sent = Array.from({ length: 12 }, (_, i) => `${socket.label}:${i}`);
    for (const text of sent) {
      socket.send(text);
      // One at a time on polling: each send is its own POST.
      if (socket.transport.name === "polling") await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await waitUntil(() => socket.messages.length >= sent.length, {
      timeout: 10_000,
      message: `${sent.length} echoes on ${socket.label} (have ${JSON.stringify(socket.messages)})${diagnose()}`,
    });
    assert.deepEqual(socket.messages, sent, `echoes on ${socket.label}`);
  }
  // The REST API of node 1 reaches every session, wherever it lives (the
  // body is an Engine.IO payload: "4…" is a message).
  const service = new WebPubSubServiceClient(cluster.connectionString(0), "echo", { allowInsecureConnection: true });
  await withTimeout(service.sendToAll("4from-node-1", { contentType: "text/plain" }), 10_000, `sendToAll${diagnose()}`);
  for (const socket of sockets) {
    await waitUntil(() => socket.messages.includes("from-node-1"), {
      timeout: 10_000,
      message: `the REST broadcast at ${socket.label}${diagnose()}`,
    });
  }
});
