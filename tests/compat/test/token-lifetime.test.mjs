// Token lifetime on live connections (issue #14), with real socket.io-client
// clients, the official SDK's app over the tunnel and the real gateway
// started with --token-expiry and a short grace:
//
// (a) a client using portcullis-client's keepTokenFresh keeps its socket id
//     and rooms across several expiries (in-band "portcullis:refresh"), over
//     the default transports (polling, then the WebSocket upgrade) and over
//     polling only, and the app never sees the refresh event;
// (b) a client that does not refresh is closed after exp + grace as a
//     recoverable close ("transport close") and reconnects with a token that
//     the helper negotiated at once;
// (c) a refresh with another user's, another hub's or a badly signed token
//     is refused (ack ok:false) and the connection is closed at its old
//     deadline all the same;
// (d) revoking a user (REST) disconnects exactly that user's connections with
//     "io server disconnect" (no automatic reconnection), and the revoked
//     token gets 401 at the handshake; revoking one token id closes exactly
//     the connection holding it.
//
// Tokens are minted here with jsonwebtoken (the test plays the app's
// negotiate), a few seconds long.

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import jwt from "jsonwebtoken";
import { keepTokenFresh, refreshToken, RefreshError, REFRESH_EVENT } from "portcullis-client";

import { startGateway, waitUntil } from "./support/gateway.mjs";
import { connectClient, connected, disconnected, emitAck, startSdkApp } from "./support/sdk-app.mjs";

const HUB = "sdk";
/** Lifetime of the tokens in these tests. */
const TTL_S = 4;
/** The gateway's grace after `exp` (--token-expiry-grace-ms). */
const GRACE_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function setup(t) {
  const gateway = await startGateway(t, {
    args: ["--token-expiry", "--token-expiry-grace-ms", String(GRACE_MS)],
  });
  const app = await startSdkApp(t, gateway, { hub: HUB });
  return { gateway, app };
}

/** A client token as the app's negotiate would mint it (with a `jti`). */
function mint(gateway, { user = "alice", hub = HUB, ttl = TTL_S, key = gateway.accessKey, jti = randomUUID() } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign(
    // jsonwebtoken writes this `iat` (with noTimestamp it would drop it).
    { aud: `${gateway.baseUrl}/clients/socketio/hubs/${hub}`, sub: user, iat: now, exp: now + ttl, jti },
    key,
    { algorithm: "HS256" },
  );
}

/** The payload of a JWT, unverified. */
function claims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

/** A socket.io-client socket through the gateway with `token`. */
function connect(t, app, gateway, token, options = {}) {
  return connectClient(t, app, {
    negotiated: { endpoint: gateway.baseUrl, path: `/clients/socketio/hubs/${HUB}`, token },
    ...options,
  });
}

/** A negotiate for keepTokenFresh that mints for `user` and counts its calls. */
function negotiator(gateway, user) {
  const calls = [];
  const negotiate = async (context) => {
    const token = mint(gateway, { user });
    calls.push({ reason: context.reason, token, at: Date.now() });
    return { endpoint: gateway.baseUrl, path: `/clients/socketio/hubs/${HUB}`, token };
  };
  return { calls, negotiate };
}

/** The engine.io handshake's status with `token`. */
async function handshakeStatus(gateway, token) {
  const url = new URL(`${gateway.path(HUB)}?EIO=4&transport=polling`, gateway.baseUrl);
  url.searchParams.set("access_token", token);
  const response = await fetch(url);
  await response.text();
  return response.status;
}

/** A REST call signed as the official client signs it (audience: the full URL). */
async function rest(gateway, method, path) {
  const url = `${gateway.baseUrl}${path}`;
  const now = Math.floor(Date.now() / 1000);
  const bearer = jwt.sign({ aud: url, iat: now, exp: now + 300 }, gateway.accessKey, {
    algorithm: "HS256",
    noTimestamp: true,
  });
  const response = await fetch(url, { method, headers: { authorization: `Bearer ${bearer}` } });
  return { status: response.status, body: await response.text() };
}

/** The rooms the app's socket `id` is in. */
async function roomsOf(app, id) {
  const sockets = await app.command("sockets", { nsp: "/" });
  return sockets.find((s) => s.id === id)?.rooms ?? null;
}

for (const [label, transports] of [
  ["polling, then the WebSocket upgrade", undefined],
  ["polling only", ["polling"]],
]) {
  test(`(a) keepTokenFresh keeps the socket id and rooms across several expiries (${label})`, async (t) => {
    const { gateway, app } = await setup(t);
    const { calls, negotiate } = negotiator(gateway, "alice");
    const first = mint(gateway);
    const socket = await connect(t, app, gateway, first, transports ? { transports } : {});
    const refreshed = [];
    const errors = [];
    const keeper = keepTokenFresh(socket, {
      negotiate,
      onRefresh: (info) => refreshed.push(info),
      onError: (error, { phase }) => errors.push(`${phase}: ${error.message}`),
    });
    t.after(() => keeper.stop());
    await connected(socket);
    const id = socket.id;
    assert.deepEqual(await emitAck(socket, "join", ["r1"]), [id, "r1"]);

    // Three token lifetimes: without the refreshes the connection would
    // have been closed at exp + grace of the first token.
    const firstDeadline = claims(first).exp * 1000 + GRACE_MS;
    await sleep(Math.max(0, firstDeadline - Date.now()) + 2 * TTL_S * 1000);

    assert.deepEqual(errors, []);
    assert.deepEqual(socket.inbox.of("$disconnect"), [], "never disconnected");
    assert.equal(socket.connected, true);
    assert.equal(socket.id, id, "same socket id");
    assert.ok(refreshed.length >= 4, `refreshes: ${refreshed.length}`);
    assert.equal(typeof claims(first).iat, "number");
    t.diagnostic(`${refreshed.length} refreshes in ${((Date.now() - claims(first).iat * 1000) / 1000).toFixed(1)} s on one connection`);
    assert.ok(calls.every((c) => c.reason === "refresh"), JSON.stringify(calls.map((c) => c.reason)));
    // The gateway answered each refresh with the new token's exp.
    const last = refreshed.at(-1).expiresAt;
    assert.ok(last > claims(first).exp + TTL_S, `expiresAt ${last}, first exp ${claims(first).exp}`);
    assert.equal(keeper.expiresAt, last);
    // The query holds the freshest token, for a reconnection.
    assert.equal(socket.io.opts.query.access_token, calls.at(-1).token);

    // Rooms survived: the app still has the socket in r1, and a room
    // broadcast reaches it.
    assert.ok((await roomsOf(app, id))?.includes("r1"), "the app's socket is still in r1");
    await app.command("emit", { target: { nsp: "/", to: "r1" }, event: "room-news", args: ["still here"] });
    assert.deepEqual(await socket.inbox.waitFor("room-news"), [["still here"]]);
    assert.deepEqual(await emitAck(socket, "echo", "ping"), "ping");

    // One engine.io connection all along, and the app never saw the
    // reserved event.
    assert.equal(app.seen("eio-connection").length, 1);
    assert.deepEqual(app.seen("event", (r) => r.event === REFRESH_EVENT), []);
    if (!transports) assert.equal(socket.io.engine.transport.name, "websocket");
  });
}

test("(b) a client that does not refresh is closed after exp + grace and reconnects with a freshly negotiated token", async (t) => {
  const { gateway, app } = await setup(t);
  const { calls, negotiate } = negotiator(gateway, "bob");
  const first = mint(gateway, { user: "bob" });
  const socket = await connect(t, app, gateway, first, { reconnection: true });
  // inBand: false — only the reconnection path (a gateway without in-band
  // refresh, or an app that prefers to reconnect).
  const keeper = keepTokenFresh(socket, { negotiate, inBand: false });
  t.after(() => keeper.stop());
  await connected(socket);
  const firstId = socket.id;
  const deadline = claims(first).exp * 1000 + GRACE_MS;

  const reason = await disconnected(socket, TTL_S * 1000 + GRACE_MS + 10_000);
  const closedAt = Date.now();
  assert.equal(reason, "transport close", "a recoverable close, not io server disconnect");
  t.diagnostic(`closed ${closedAt - deadline} ms after exp + grace`);
  // Not before the deadline (1 s for the whole-second `exp` and timers).
  assert.ok(closedAt >= deadline - 1000, `closed ${deadline - closedAt} ms before exp + grace`);
  assert.ok(closedAt <= deadline + 5000, `closed ${closedAt - deadline} ms after exp + grace`);

  // The helper negotiated at once, and socket.io reconnected with that token.
  await waitUntil(() => socket.connected && socket.id !== firstId, { timeout: 10_000, message: "the reconnection" });
  assert.equal(calls.length, 1, JSON.stringify(calls.map((c) => c.reason)));
  assert.equal(calls[0].reason, "reconnect");
  assert.ok(calls[0].at - closedAt < 200, `negotiated ${calls[0].at - closedAt} ms after the close`);
  t.diagnostic(`reconnected ${Date.now() - closedAt} ms after the close`);
  const reconnection = await app.waitFor("connection", { id: socket.id });
  assert.equal(reconnection.query.access_token, calls[0].token);
  assert.deepEqual(await emitAck(socket, "echo", "back"), "back");
});

test("(c) a refresh with another user's, another hub's or a badly signed token is refused; the old deadline holds", async (t) => {
  const { gateway, app } = await setup(t);
  const token = mint(gateway, { user: "carol" });
  const socket = await connect(t, app, gateway, token);
  await connected(socket);
  const id = socket.id;
  const deadline = claims(token).exp * 1000 + GRACE_MS;

  const attempts = {
    "another user": mint(gateway, { user: "mallory", ttl: 600 }),
    "another hub": mint(gateway, { user: "carol", hub: "elsewhere", ttl: 600 }),
    "a wrong key": mint(gateway, { user: "carol", key: "not-the-access-key", ttl: 600 }),
    "not a token": "not.a.jwt",
  };
  for (const [what, bad] of Object.entries(attempts)) {
    const error = await refreshToken(socket, bad).then(
      (answer) => assert.fail(`${what}: accepted (${JSON.stringify(answer)})`),
      (e) => e,
    );
    assert.ok(error instanceof RefreshError, `${what}: ${error}`);
    assert.ok([400, 401, 403].includes(error.code), `${what}: code ${error.code} (${error.message})`);
    assert.ok(!error.message.includes(bad), `${what}: the message echoes the token`);
  }
  // The raw ack, as the wire form says.
  const raw = await socket.timeout(5000).emitWithAck(REFRESH_EVENT, { token: attempts["another user"] });
  assert.equal(raw.ok, false);
  assert.equal(typeof raw.message, "string");

  assert.equal(socket.id, id);
  const reason = await disconnected(socket, TTL_S * 1000 + GRACE_MS + 10_000);
  const closedAt = Date.now();
  assert.equal(reason, "transport close");
  t.diagnostic(`closed ${closedAt - deadline} ms after the old exp + grace`);
  assert.ok(closedAt >= deadline - 1000, `closed ${deadline - closedAt} ms before the old deadline`);
  assert.ok(closedAt <= deadline + 5000, `closed ${closedAt - deadline} ms after the old deadline`);
  assert.deepEqual(app.seen("event", (r) => r.event === REFRESH_EVENT), [], "the app never saw the refreshes");
});

// socket.io-client handles a Socket.IO packet on the next tick but an
// Engine.IO close at once: a DISCONNECT and the close in one poll response
// would reach the client as "transport close" (and it would reconnect).
// These run over WebSocket; long-polling has its own test at the end.
const WEBSOCKET = { transports: ["websocket"] };

test("(d) revoking a user disconnects exactly its connections (io server disconnect) and its token cannot reconnect", async (t) => {
  const { gateway, app } = await setup(t);
  const aliceToken = mint(gateway, { user: "alice", ttl: 600 });
  const alice = await connect(t, app, gateway, aliceToken, { reconnection: true, ...WEBSOCKET });
  const alice2 = await connect(t, app, gateway, mint(gateway, { user: "alice", ttl: 600 }), { reconnection: true, ...WEBSOCKET });
  const bobToken = mint(gateway, { user: "bob", ttl: 600 });
  const bob = await connect(t, app, gateway, bobToken, WEBSOCKET);
  const { calls, negotiate } = negotiator(gateway, "alice");
  const keeper = keepTokenFresh(alice, { negotiate });
  t.after(() => keeper.stop());
  await Promise.all([alice, alice2, bob].map((s) => connected(s)));
  await Promise.all([alice, alice2, bob].map((s) => app.waitFor("connection", { id: s.id })));

  const before = Math.floor(Date.now() / 1000) + 1;
  const started = Date.now();
  const answer = await rest(gateway, "POST", `/api/hubs/${HUB}/users/alice/tokens/:revoke?issuedBefore=${before}`);
  assert.equal(answer.status, 200, `revoke answered ${answer.status}: ${answer.body}`);
  assert.deepEqual(JSON.parse(answer.body), { closed: 2 });

  assert.equal(await disconnected(alice, 5000), "io server disconnect");
  assert.equal(await disconnected(alice2, 5000), "io server disconnect");
  assert.ok(Date.now() - started < 2000, `disconnected ${Date.now() - started} ms after the revocation`);
  t.diagnostic(`both connections disconnected within ${Date.now() - started} ms of the REST call`);
  // No automatic reconnection, and the helper did not negotiate.
  await sleep(1500);
  assert.equal(alice.connected, false);
  assert.equal(alice2.connected, false);
  assert.deepEqual(calls, []);
  // Bob is untouched.
  assert.equal(bob.connected, true);
  assert.deepEqual(await emitAck(bob, "echo", "still"), "still");
  assert.deepEqual(bob.inbox.of("$disconnect"), []);

  // The revoked token is refused at the handshake; Bob's is not.
  assert.equal(await handshakeStatus(gateway, aliceToken), 401);
  assert.equal(await handshakeStatus(gateway, bobToken), 200);
});

test("(d) revoking one token id closes exactly the connection that holds it", async (t) => {
  const { gateway, app } = await setup(t);
  const jti = randomUUID();
  const revoked = mint(gateway, { user: "dave", ttl: 600, jti });
  const kept = mint(gateway, { user: "dave", ttl: 600 });
  const a = await connect(t, app, gateway, revoked, WEBSOCKET);
  const b = await connect(t, app, gateway, kept, WEBSOCKET);
  await Promise.all([a, b].map((s) => connected(s)));

  const expiresAt = claims(revoked).exp;
  const answer = await rest(gateway, "POST", `/api/hubs/${HUB}/tokens/${jti}/:revoke?expiresAt=${expiresAt}`);
  assert.equal(answer.status, 200, `revoke answered ${answer.status}: ${answer.body}`);
  assert.deepEqual(JSON.parse(answer.body), { closed: 1 });
  assert.equal(await disconnected(a, 5000), "io server disconnect");
  assert.equal(b.connected, true);
  assert.deepEqual(await emitAck(b, "echo", "ok"), "ok");
  assert.equal(await handshakeStatus(gateway, revoked), 401);
  assert.equal(await handshakeStatus(gateway, kept), 200);
});

test("(b) a reconnection attempt refused with 401 makes the helper negotiate again before the next", async (t) => {
  const { gateway, app } = await setup(t);
  // The first token negotiate hands out for the reconnection is revoked
  // beforehand (by its jti): that attempt gets 401, the next must carry
  // another token.
  const revokedJti = randomUUID();
  const revoked = await rest(gateway, "POST", `/api/hubs/${HUB}/tokens/${revokedJti}/:revoke`);
  assert.equal(revoked.status, 200, revoked.body);
  const calls = [];
  const negotiate = async ({ reason }) => {
    const jti = calls.length === 0 ? revokedJti : randomUUID();
    const token = mint(gateway, { user: "erin", jti, ttl: 600 });
    calls.push({ reason, jti, at: Date.now() });
    return { token };
  };
  const socket = await connect(t, app, gateway, mint(gateway, { user: "erin" }), { reconnection: true });
  const errors = [];
  socket.io.on("error", (error) => errors.push(error.description ?? error.message));
  const keeper = keepTokenFresh(socket, { negotiate, inBand: false });
  t.after(() => keeper.stop());
  await connected(socket);
  const firstId = socket.id;

  assert.equal(await disconnected(socket, TTL_S * 1000 + GRACE_MS + 10_000), "transport close");
  await waitUntil(() => socket.connected && socket.id !== firstId, { timeout: 15_000, message: "the reconnection" });
  assert.deepEqual(errors, [401], "one attempt refused, with 401");
  assert.equal(calls.length, 2, JSON.stringify(calls));
  assert.deepEqual(calls.map((c) => c.reason), ["reconnect", "reconnect"]);
  assert.equal(claims(socket.io.opts.query.access_token).jti, calls[1].jti);
  assert.deepEqual(await emitAck(socket, "echo", "back"), "back");
});

test(
  "(d) over long-polling, a revoked connection also gets io server disconnect",
  async (t) => {
    const { gateway, app } = await setup(t);
    const socket = await connect(t, app, gateway, mint(gateway, { user: "frank", ttl: 600 }), {
      reconnection: true,
      transports: ["polling"],
    });
    await connected(socket);
    await app.waitFor("connection", { id: socket.id });
    const answer = await rest(gateway, "POST", `/api/hubs/${HUB}/users/frank/tokens/:revoke`);
    assert.equal(answer.status, 200, answer.body);
    assert.equal(await disconnected(socket, 5000), "io server disconnect");
    assert.equal(socket.io.engine?.transport?.name ?? "polling", "polling");
    // No reconnection.
    await sleep(1500);
    assert.equal(socket.connected, false);
    assert.equal(app.seen("connection").length, 1);
  },
);
