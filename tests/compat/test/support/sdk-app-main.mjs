// A Socket.IO application server wired to the gateway with the official SDK
// `@azure/web-pubsub-socket.io`, run as a CHILD PROCESS by sdk-app.mjs (so a
// test can kill it like a crashed server). It is written the way the SDK's
// examples are written (express + http server + `useAzureSocketIO` +
// `negotiate`, and for the passport flavour express-session + passport-local +
// `usePassport()` + `restorePassport()` + a guard middleware), plus a test
// harness over IPC:
//
//   child → parent  { type: "ready", port }                    once the SDK is attached
//                   { type: "report", kind, ... }              something happened
//                   { type: "reply", reqId, ok, value|error }  answer to a command
//   parent → child  { reqId, cmd, ... }                        see `commands` below
//
// Configuration comes from the SDK_APP_CONFIG environment variable (JSON):
//   { name, hub, connectionString, passport: bool, sio: "app" | "sdk",
//     serverOptions: {...} }
// `sio: "sdk"` loads the socket.io copy the SDK itself depends on (what the
// SDK examples get, since they do not depend on socket.io themselves);
// `sio: "app"` loads the test package's own socket.io 4.8.x.

import http from "node:http";
import { createRequire } from "node:module";

// `node --test test/` also runs the files under test/support: outside a
// fork by sdk-app.mjs there is nothing to do.
if (typeof process.send !== "function" || !process.env.SDK_APP_CONFIG) process.exit(0);

const require = createRequire(import.meta.url);
const config = JSON.parse(process.env.SDK_APP_CONFIG);
const NAME = config.name ?? "app";

// PORTCULLIS_SDK_ENTRY points at another build of the SDK (e.g. one compiled
// from the upstream sources) to run the same tests against it.
const sdkEntry = require.resolve(process.env.PORTCULLIS_SDK_ENTRY || "@azure/web-pubsub-socket.io");
const { useAzureSocketIO, negotiate, usePassport, restorePassport } = require(sdkEntry);
const socketIoPath =
  config.sio === "sdk" ? createRequire(sdkEntry).resolve("socket.io") : require.resolve("socket.io");
const SocketIO = require(socketIoPath);
const { Server } = SocketIO;
const SDK_SOCKET_IO = createRequire(sdkEntry)("socket.io");

const express = require("express");

// ---------------------------------------------------------------------------
// IPC helpers

function send(message) {
  if (process.connected) process.send(message);
}

/** Buffers/typed arrays in `value` as Buffer (IPC delivers Uint8Array). */
function toBuffers(value) {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(toBuffers);
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toBuffers(v)]));
  }
  return value;
}

/** `value` made cloneable for IPC: functions dropped, Buffers kept. */
function cloneable(value) {
  if (typeof value === "function") return "[function]";
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(cloneable);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, cloneable(v)]));
  }
  return value;
}

function report(kind, fields = {}) {
  send({ type: "report", kind, app: NAME, pid: process.pid, at: Date.now(), ...fields });
}

// ---------------------------------------------------------------------------
// The application

const app = express();
const server = http.createServer(app);
const io = new Server(server, config.serverOptions ?? {});

const USERS = [{ id: 0, username: "john", password: "doe", age: 18 }];
let passport;
if (config.passport) {
  const session = require("express-session");
  passport = require("passport");
  const LocalStrategy = require("passport-local").Strategy;
  app.use(session({ store: new session.MemoryStore(), secret: "changeit", resave: false, saveUninitialized: false }));
  app.use(express.urlencoded({ extended: false }));
  app.use(passport.initialize());
  app.use(passport.session());
  passport.use(
    new LocalStrategy((username, password, done) => {
      if (username === USERS[0].username && password === USERS[0].password) return done(null, USERS[0]);
      return done(null, false);
    }),
  );
  passport.serializeUser((user, cb) => cb(null, user.id));
  passport.deserializeUser((id, cb) => cb(null, USERS.find((u) => String(u.id) === String(id)) ?? false));
  app.post("/login", passport.authenticate("local", { successRedirect: "/", failureRedirect: "/login-failed" }));
  app.get("/", (req, res) => res.json({ user: req.user ? req.user.username : null }));
}

const wpsOptions = { hub: config.hub, connectionString: config.connectionString };

// Every namespace the tests use gets the same handlers.
function wire(nsp) {
  nsp.on("connection", (socket) => {
    const request = socket.request;
    report("connection", {
      nsp: nsp.name,
      id: socket.id,
      connId: socket.conn.id,
      claims: cloneable(request.claims ?? null),
      user: request.user ? cloneable(request.user) : null,
      query: cloneable(socket.handshake.query),
      auth: cloneable(socket.handshake.auth),
    });
    socket.onAny((event, ...args) => {
      report("event", { nsp: nsp.name, id: socket.id, event, args: cloneable(args) });
    });
    // Acknowledged events.
    socket.on("echo", (...args) => {
      const cb = args.pop();
      if (typeof cb === "function") cb(...args);
    });
    socket.on("whoami", (cb) => cb(socket.request.user ? socket.request.user.username : ""));
    socket.on("whichapp", (cb) => cb({ app: NAME, pid: process.pid, id: socket.id, connId: socket.conn.id }));
    socket.on("join", async (rooms, cb) => {
      await socket.join(rooms);
      cb?.([...socket.rooms]);
    });
    socket.on("leave", async (room, cb) => {
      await socket.leave(room);
      cb?.([...socket.rooms]);
    });
    socket.on("broadcast", (...args) => socket.broadcast.emit(...args));
    socket.on("disconnecting", (reason) => report("disconnecting", { nsp: nsp.name, id: socket.id, reason }));
    socket.on("disconnect", (reason) => report("disconnect", { nsp: nsp.name, id: socket.id, reason }));
  });
}

/** How many numbered "seq" events "/greet" emits on connection. */
const GREET_BURST = 50;

// "/greet" does its work synchronously inside the `connection` handler, as
// most Socket.IO apps do: these writes reach the server's Engine.IO socket
// while the CONNECT answer is still being sent through the gateway.
function greetOnConnection(nsp) {
  nsp.on("connection", (socket) => {
    report("connection", { nsp: nsp.name, id: socket.id, connId: socket.conn.id });
    socket.emit("welcome", "utf8 — ✓", Buffer.from([1, 2, 3]));
    socket.send("via send");
    for (let i = 0; i < GREET_BURST; i++) socket.emit("seq", i);
    socket.timeout(5_000).emit("ask", "ready?", (err, answer) => {
      report("greet-ack", { id: socket.id, err: err ? err.message : null, answer: cloneable(answer) });
    });
  });
}

function findSocket(nspName = "/", id) {
  const socket = io.of(nspName).sockets.get(id);
  if (!socket) throw new Error(`no socket ${id} in namespace ${nspName} of ${NAME}`);
  return socket;
}

/** A broadcast operator for `target`: { nsp, to, except, from, timeout }. */
function operator({ nsp = "/", to, except, from, timeout, socket: socketId } = {}) {
  let op;
  if (socketId) op = findSocket(nsp, socketId);
  else if (from) op = findSocket(nsp, from).broadcast;
  else op = io.of(nsp);
  if (to !== undefined) op = op.to(to);
  if (except !== undefined) op = op.except(except);
  if (timeout !== undefined) op = op.timeout(timeout);
  return op;
}

// socket.io's socketsJoin()/socketsLeave() drop the adapter's promise, but
// the SDK's adapter makes a REST call there (its docs say to await these
// calls): call the adapter directly and await it, so the next command is
// ordered after the change.
function broadcastOptions(op) {
  return { rooms: op.rooms ?? new Set(), except: op.exceptRooms ?? new Set(), flags: op.flags ?? {} };
}

const commands = {
  async emit({ target, event, args = [] }) {
    operator(target).emit(event, ...toBuffers(args));
    return true;
  },
  /** emitWithAck, promise form: resolves with the responses or the error. */
  async emitWithAck({ target, event, args = [] }) {
    const started = Date.now();
    try {
      const responses = await operator(target).emitWithAck(event, ...toBuffers(args));
      return { err: null, responses: cloneable(responses), elapsed: Date.now() - started };
    } catch (error) {
      return { err: error.message, responses: null, elapsed: Date.now() - started };
    }
  },
  /** Broadcast with an ack callback: reports the partial responses on timeout. */
  async emitWithAckCallback({ target, event, args = [] }) {
    const started = Date.now();
    return new Promise((resolve) => {
      operator(target).emit(event, ...toBuffers(args), (err, responses) => {
        resolve({ err: err ? err.message : null, responses: cloneable(responses), elapsed: Date.now() - started });
      });
    });
  },
  /** `count` emits of `event` with the sequence number, back to back. */
  async burst({ target, event, count }) {
    const op = operator(target);
    for (let i = 0; i < count; i++) op.emit(event, i);
    return true;
  },
  async disconnectSockets({ target, close }) {
    operator(target).disconnectSockets(close);
    return true;
  },
  async socketDisconnect({ nsp = "/", id, close }) {
    findSocket(nsp, id).disconnect(close);
    return true;
  },
  async socketsJoin({ target, rooms }) {
    const op = operator(target);
    await op.adapter.addSockets(broadcastOptions(op), [].concat(rooms));
    return true;
  },
  async socketsLeave({ target, rooms }) {
    const op = operator(target);
    await op.adapter.delSockets(broadcastOptions(op), [].concat(rooms));
    return true;
  },
  async sockets({ nsp = "/" }) {
    return [...io.of(nsp).sockets.values()].map((s) => ({ id: s.id, connId: s.conn.id, rooms: [...s.rooms] }));
  },
  async ioSocketPath() {
    const response = await fetch(`http://127.0.0.1:${server.address().port}/socket.io/?EIO=4&transport=polling`);
    return { status: response.status, body: await response.text() };
  },
};

process.on("message", async (message) => {
  if (!message || message.reqId === undefined) return;
  const { reqId } = message;
  const handler = commands[message.cmd];
  if (!handler) {
    send({ type: "reply", reqId, ok: false, error: `unknown command ${message.cmd}` });
    return;
  }
  try {
    const value = await handler(message);
    send({ type: "reply", reqId, ok: true, value });
  } catch (error) {
    send({ type: "reply", reqId, ok: false, error: error.stack ?? String(error) });
  }
});

// The parent going away takes us with it.
process.on("disconnect", () => process.exit(0));

async function main() {
  await useAzureSocketIO(io, wpsOptions);
  report("attached");

  // `negotiate(io, …)` needs `io` to be an instance of the SDK's own socket.io
  // Server (it tests `io instanceof SIO.Server`); with another copy of
  // socket.io, pass the options object instead (the documented overload).
  const negotiateTarget = io instanceof SDK_SOCKET_IO.Server ? io : wpsOptions;
  if (config.passport) {
    const wrap = (middleware) => (socket, next) => middleware(socket.request, {}, next);
    app.get("/negotiate", negotiate(negotiateTarget, usePassport()));
    io.use(wrap(restorePassport()));
    io.use(wrap(passport.initialize()));
    io.use(wrap(passport.session()));
    io.use((socket, next) => {
      if (socket.request.user) next();
      else next(new Error("unauthorized"));
    });
  } else {
    app.get(
      "/negotiate",
      negotiate(negotiateTarget, (req) => {
        const username = new URL(req.url, "http://x").searchParams.get("username");
        const minutes = new URL(req.url, "http://x").searchParams.get("expirationMinutes");
        const options = {};
        if (username !== null) options.userId = username;
        if (minutes !== null) options.expirationTimeInMinutes = Number(minutes);
        return options;
      }),
    );
  }

  // Namespaces: "/" and "/chat" accept; "/locked" refuses in a middleware;
  // any other namespace is unknown to socket.io ("Invalid namespace").
  wire(io.of("/"));
  wire(io.of("/chat"));
  const locked = io.of("/locked");
  locked.use((socket, next) => {
    report("locked-middleware", { id: socket.id });
    next(new Error("locked out"));
  });
  wire(locked);
  greetOnConnection(io.of("/greet"));

  io.engine.on("connection", (rawSocket) => {
    report("eio-connection", {
      connId: rawSocket.id,
      claims: cloneable(rawSocket.request?.claims ?? null),
      query: cloneable(rawSocket.request?._query ?? null),
    });
    rawSocket.on("close", (reason) => report("eio-close", { connId: rawSocket.id, reason: String(reason) }));
  });

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  send({
    type: "ready",
    port: server.address().port,
    socketIoVersion: require(socketIoPath.replace(/dist[\\/]index\.js$/, "package.json")).version,
  });
}

main().catch((error) => {
  console.error(`[${NAME}] failed:`, error);
  process.exit(1);
});
