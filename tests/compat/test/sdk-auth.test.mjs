// The official server SDK `@azure/web-pubsub-socket.io` (in a child process)
// and real socket.io-client clients through the real gateway: the negotiate
// flow (token in the query, claims reaching `socket.request.claims`, bad
// tokens refused with 401 before the app hears of them), anonymous hubs, and
// the passport flow of the SDK's chat-with-auth-passport example.

import { test } from "node:test";
import assert from "node:assert/strict";
import jwt from "jsonwebtoken";
import WebSocket from "ws";

import { startGateway } from "./support/gateway.mjs";
import {
  connectClient,
  connected,
  connectError,
  emitAck,
  jwtPayload,
  negotiateWith,
  startSdkApp,
} from "./support/sdk-app.mjs";

const HUB = "sdk";

/** The HTTP status a websocket-only handshake is refused with (or 101). */
function wsHandshakeStatus(gateway, hub, token) {
  const url = new URL(`${gateway.wsUrl(hub)}?EIO=4&transport=websocket`);
  if (token !== null) url.searchParams.set("access_token", token);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error("websocket handshake: no answer within 5 s"));
    }, 5_000);
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      resolve(res.statusCode);
      ws.terminate();
    });
    ws.on("open", () => {
      clearTimeout(timer);
      resolve(101);
      ws.close();
    });
    ws.on("error", () => {});
  });
}

/** A handshake request as engine.io-client makes it, answered status + body. */
async function handshake(gateway, hub, token) {
  const url = new URL(`${gateway.path(hub)}?EIO=4&transport=polling`, gateway.baseUrl);
  if (token !== null) url.searchParams.set("access_token", token);
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

for (const sio of ["sdk", "app"]) {
  test(`negotiate (socket.io of the ${sio}): token in the query, claims reach socket.request.claims`, async (t) => {
    const gateway = await startGateway(t);
    const app = await startSdkApp(t, gateway, { hub: HUB, sio });

    const negotiated = await negotiateWith(app, { query: { username: "bob" } });
    assert.equal(negotiated.endpoint, `http://127.0.0.1:${gateway.port}`);
    assert.equal(negotiated.path, `/clients/socketio/hubs/${HUB}`);
    const payload = jwtPayload(negotiated.token);
    assert.equal(payload.userId, "bob");
    assert.equal(payload.sub, "bob");
    assert.equal(payload.aud, `http://127.0.0.1:${gateway.port}/clients/socketio/hubs/${HUB}`);

    const socket = await connectClient(t, app, { negotiated, query: { extra: "x1" } });
    await connected(socket);

    const connection = await app.waitFor("connection", { nsp: "/", id: socket.id });
    const claims = connection.claims;
    assert.ok(claims && typeof claims === "object", `claims: ${JSON.stringify(claims)}`);
    assert.deepEqual(claims.userId, ["bob"]);
    assert.deepEqual(claims.sub, ["bob"]);
    assert.deepEqual(claims.aud, [payload.aud]);
    for (const [name, value] of Object.entries(claims)) {
      assert.ok(
        Array.isArray(value) && value.every((v) => typeof v === "string"),
        `claim ${name} is not a string array: ${JSON.stringify(value)}`,
      );
    }
    // The client's query reaches socket.handshake.query.
    assert.equal(connection.query.extra, "x1");
    assert.equal(connection.query.access_token, negotiated.token);

    // And the connection works both ways.
    assert.deepEqual(await emitAck(socket, "echo", "hello"), "hello");
  });
}

test("negotiate: a numeric userId claim reaches the app as a string array", async (t) => {
  const gateway = await startGateway(t);
  const app = await startSdkApp(t, gateway, { hub: HUB });
  // What usePassport() mints for user id 0: `userId: 0` (a JSON number), no sub.
  const now = Math.floor(Date.now() / 1000);
  const aud = `http://127.0.0.1:${gateway.port}/clients/socketio/hubs/${HUB}`;
  const token = jwt.sign({ userId: 0, role: ["a", "b"], iat: now, exp: now + 600, aud }, gateway.accessKey, {
    algorithm: "HS256",
    noTimestamp: true,
  });
  const socket = await connectClient(t, app, { token });
  await connected(socket);
  const connection = await app.waitFor("connection", { nsp: "/", id: socket.id });
  assert.deepEqual(connection.claims.userId, ["0"]);
  assert.deepEqual(connection.claims.role, ["a", "b"]);
  assert.equal(connection.claims.sub, undefined);
});

const BAD_TOKENS = {
  "wrong key": (gw, aud, now) => jwt.sign({ userId: "eve", aud, iat: now, exp: now + 600 }, "not-the-key", { noTimestamp: true }),
  expired: (gw, aud, now) =>
    jwt.sign({ userId: "eve", aud, iat: now - 7200, exp: now - 3600 }, gw.accessKey, { noTimestamp: true }),
  malformed: () => "not.a.jwt",
  missing: () => null,
};

for (const [kind, make] of Object.entries(BAD_TOKENS)) {
  test(`negotiate: a ${kind} token gets 401 and no connect reaches the app`, async (t) => {
    const gateway = await startGateway(t);
    const app = await startSdkApp(t, gateway, { hub: HUB });
    const aud = `http://127.0.0.1:${gateway.port}/clients/socketio/hubs/${HUB}`;
    const bad = make(gateway, aud, Math.floor(Date.now() / 1000));

    const raw = await handshake(gateway, HUB, bad);
    assert.equal(raw.status, 401, `raw handshake answered ${raw.status}: ${raw.body}`);
    assert.equal(await wsHandshakeStatus(gateway, HUB, bad), 401, "websocket-only handshake");

    const socket = await connectClient(t, app, { token: bad });
    const error = await connectError(socket);
    assert.match(String(error.message), /xhr poll error|websocket error|401/i);
    // socket.io-client over polling reports the status in the error context.
    if (error.description !== undefined) assert.equal(error.description, 401);

    // A good client afterwards is the first (and only) connection the app hears of.
    const good = await connectClient(t, app, { username: "alice" });
    await connected(good);
    await app.waitFor("connection", { id: good.id });
    const eio = app.seen("eio-connection");
    assert.equal(eio.length, 1, `engine.io connections the app saw: ${JSON.stringify(eio)}`);
    assert.deepEqual(eio[0].claims.userId, ["alice"]);
    assert.equal(app.seen("connection").length, 1);
  });
}

test("anonymous: refused by default, accepted on --allow-anonymous with empty claims", async (t) => {
  await t.test("default: denied", async (t) => {
    const gateway = await startGateway(t);
    const app = await startSdkApp(t, gateway, { hub: HUB });
    const raw = await handshake(gateway, HUB, null);
    assert.equal(raw.status, 401, raw.body);
    const socket = await connectClient(t, app, { token: null });
    await connectError(socket);
    assert.equal(app.seen("eio-connection").length, 0);
  });
  await t.test("--allow-anonymous: the quickstart connects without negotiate", async (t) => {
    const gateway = await startGateway(t, { allowAnonymous: true });
    const app = await startSdkApp(t, gateway, { hub: HUB });
    const socket = await connectClient(t, app, {
      token: null,
      negotiated: { endpoint: gateway.baseUrl, path: `/clients/socketio/hubs/${HUB}` },
    });
    await connected(socket);
    const connection = await app.waitFor("connection", { id: socket.id });
    assert.deepEqual(connection.claims, {});
    assert.equal(await emitAck(socket, "echo", "anon"), "anon");
  });
});

test("the SDK answers 403 on the app server's own /socket.io path", async (t) => {
  const gateway = await startGateway(t);
  const app = await startSdkApp(t, gateway, { hub: HUB });
  const { status } = await app.command("ioSocketPath");
  assert.equal(status, 403);
});

// ---------------------------------------------------------------------------
// Passport (chat-with-auth-passport)

/** POST /login with the form; returns the session cookie. */
async function login(app, username, password) {
  const response = await fetch(`${app.baseUrl}/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ username, password }).toString(),
    redirect: "manual",
  });
  assert.equal(response.status, 302);
  const location = response.headers.get("location");
  const cookie = (response.headers.getSetCookie?.() ?? [response.headers.get("set-cookie")])
    .filter(Boolean)
    .map((c) => c.split(";")[0])
    .join("; ");
  return { location, cookie };
}

test("passport: login, negotiate with the session cookie, socket.request.user restored, whoami", async (t) => {
  const gateway = await startGateway(t);
  // The example's own stack: the SDK's socket.io, negotiate(io, usePassport()).
  const app = await startSdkApp(t, gateway, { hub: HUB, passport: true, sio: "sdk" });

  const { location, cookie } = await login(app, "john", "doe");
  assert.equal(location, "/");
  assert.match(cookie, /^connect\.sid=/);
  const me = await (await fetch(`${app.baseUrl}/`, { headers: { cookie } })).json();
  assert.deepEqual(me, { user: "john" });

  const negotiated = await negotiateWith(app, { cookie, query: { expirationMinutes: "10" } });
  const payload = jwtPayload(negotiated.token);
  assert.equal(payload.userId, 0);
  assert.equal(payload.sub, undefined);
  assert.equal(payload.exp - payload.iat, 600);

  const socket = await connectClient(t, app, { negotiated });
  await connected(socket);
  const connection = await app.waitFor("connection", { id: socket.id });
  assert.deepEqual(connection.claims.userId, ["0"]);
  assert.equal(connection.user?.username, "john");
  assert.equal(await emitAck(socket, "whoami"), "john");
});

test("passport: without a login, or for an unknown user, the socket is refused by the middlewares (guard: unauthorized)", async (t) => {
  const gateway = await startGateway(t);
  const app = await startSdkApp(t, gateway, { hub: HUB, passport: true, sio: "sdk" });

  const failed = await login(app, "john", "wrong");
  assert.equal(failed.location, "/login-failed");

  const negotiated = await negotiateWith(app, { cookie: failed.cookie || undefined });
  assert.equal(jwtPayload(negotiated.token).userId, undefined);

  // The token is valid (the gateway lets it in), but the app's middlewares
  // refuse: with no userId claim restorePassport() leaves no session, and
  // passport.session() (0.6+) fails before the guard is reached, with its
  // own message.
  const socket = await connectClient(t, app, { negotiated });
  const error = await connectError(socket);
  assert.match(error.message, /^(unauthorized|Login sessions require session support\b.*)$/);
  await app.waitFor("eio-connection", {});
  assert.equal(app.seen("connection").length, 0);

  // A valid token for a user passport does not know (deleted since): the
  // session is restored, deserializeUser finds nobody, the guard refuses.
  const now = Math.floor(Date.now() / 1000);
  const stale = jwt.sign(
    { userId: 42, iat: now, exp: now + 600, aud: `http://127.0.0.1:${gateway.port}/clients/socketio/hubs/${HUB}` },
    gateway.accessKey,
    { noTimestamp: true },
  );
  const guarded = await connectClient(t, app, { token: stale });
  const guardError = await connectError(guarded);
  assert.equal(guardError.message, "unauthorized");
  assert.equal(app.seen("connection").length, 0);

  // A logged-in user on the same app still gets through.
  const { cookie } = await login(app, "john", "doe");
  const ok = await connectClient(t, app, { cookie });
  await connected(ok);
  assert.equal(await emitAck(ok, "whoami"), "john");
});
