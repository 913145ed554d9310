// The REST API over plain HTTP, driven by the real `@azure/web-pubsub`
// WebPubSubServiceClient that operators and other backends use. Bodies are
// Engine.IO payloads: "42[...]" is a message whose data is '2[...]'.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { Socket } from "engine.io-client";
import { startGateway, nextEvent, waitUntil } from "./support/gateway.mjs";

const require = createRequire(import.meta.url);
const { WebPubSubServiceClient } = require("@azure/web-pubsub");

const HUB = "ops";

async function connectClient(gw, user) {
  const socket = new Socket(gw.baseUrl, {
    path: gw.path(HUB),
    query: { access_token: gw.token({ hub: HUB, user }) },
    transports: ["websocket"],
  });
  const messages = [];
  socket.on("message", (data) => messages.push(data));
  await nextEvent(socket, "open");
  return { socket, messages };
}

test("WebPubSubServiceClient sends to all, users, connections and groups", async (t) => {
  const gw = await startGateway(t, { echoHubs: [HUB] });
  const service = new WebPubSubServiceClient(gw.connectionString, HUB, { allowInsecureConnection: true });
  const alice = await connectClient(gw, "alice");
  const bob = await connectClient(gw, "bob");
  t.after(() => { alice.socket.close(); bob.socket.close(); });

  await service.sendToAll('42["news","all"]', { contentType: "text/plain" });
  await waitUntil(() => alice.messages.includes('2["news","all"]') && bob.messages.includes('2["news","all"]'), { message: "broadcast" });

  await service.sendToUser("alice", '42["news","alice"]', { contentType: "text/plain" });
  await service.sendToConnection(bob.socket.id, '42["news","bob"]', { contentType: "text/plain" });
  await waitUntil(() => alice.messages.includes('2["news","alice"]') && bob.messages.includes('2["news","bob"]'), { message: "direct sends" });
  assert.ok(!bob.messages.includes('2["news","alice"]'), "a user send reaches only that user");
  assert.ok(!alice.messages.includes('2["news","bob"]'), "a connection send reaches only that connection");

  const group = service.group("blue");
  await group.addConnection(alice.socket.id);
  assert.equal(await service.groupExists("blue"), true);
  assert.equal(await service.groupExists("red"), false);
  await group.sendToAll('42["news","blue"]', { contentType: "text/plain" });
  await service.sendToAll('42["news","marker"]', { contentType: "text/plain" });
  await waitUntil(() => bob.messages.includes('2["news","marker"]') && alice.messages.includes('2["news","marker"]'), { message: "marker" });
  assert.ok(alice.messages.includes('2["news","blue"]'));
  assert.ok(!bob.messages.includes('2["news","blue"]'), "only group members get a group send");
});

test("WebPubSubServiceClient checks existence and closes connections", async (t) => {
  const gw = await startGateway(t, { echoHubs: [HUB] });
  const service = new WebPubSubServiceClient(gw.connectionString, HUB, { allowInsecureConnection: true });
  const alice = await connectClient(gw, "alice");
  const id = alice.socket.id; // engine.io-client forgets it on close
  assert.equal(await service.connectionExists(id), true);
  assert.equal(await service.userExists("alice"), true);
  assert.equal(await service.userExists("nobody"), false);
  const closed = nextEvent(alice.socket, "close");
  await service.closeConnection(id, { reason: "maintenance" });
  await closed;
  await gw.waitForConnections(0);
  assert.equal(await service.connectionExists(id), false);
});

test("a service client with the wrong key is refused", async (t) => {
  const gw = await startGateway(t, { echoHubs: [HUB] });
  const wrong = gw.connectionString.replace(/AccessKey=[^;]*/, "AccessKey=not-the-key");
  const service = new WebPubSubServiceClient(wrong, HUB, { allowInsecureConnection: true });
  await assert.rejects(service.sendToAll('42["x"]', { contentType: "text/plain" }), (error) => error.statusCode === 401);
});

test("WebPubSubServiceClient revokes tokens through portcullis-client/server", async (t) => {
  const { revokeUserTokens, revokeToken } = require("portcullis-client/server");
  const gw = await startGateway(t, { echoHubs: [HUB] });
  const service = new WebPubSubServiceClient(gw.connectionString, HUB, { allowInsecureConnection: true });
  const alice = await connectClient(gw, "alice");
  const bob = await connectClient(gw, "bob");
  t.after(() => bob.socket.close());

  const closed = nextEvent(alice.socket, "close");
  assert.deepEqual(await revokeUserTokens(service, "alice"), { closed: 1 });
  await closed;
  await gw.waitForConnections(1);
  assert.equal(bob.socket.readyState, "open", "another user's connection stays");
  // The revoked token is refused at the handshake.
  const refused = await fetch(`${gw.hubUrl(HUB)}?EIO=4&transport=polling&access_token=${gw.token({ hub: HUB, user: "alice" })}`);
  assert.equal(refused.status, 401);

  assert.deepEqual(await revokeToken(service, "nobody-holds-it", { expiresAt: new Date(Date.now() + 60_000) }), { closed: 0 });
  const wrong = new WebPubSubServiceClient(gw.connectionString.replace(/AccessKey=[^;]*/, "AccessKey=not-the-key"), HUB, { allowInsecureConnection: true });
  await assert.rejects(revokeUserTokens(wrong, "bob"), (error) => error.statusCode === 401);
});
