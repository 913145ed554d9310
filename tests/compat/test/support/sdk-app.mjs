// Test support: a Socket.IO application server wired to the gateway with the
// official SDK, running in a child process (sdk-app-main.mjs), and real
// socket.io-client clients that negotiate with it.
//
// `startSdkApp(t, gateway, options)` forks the app, waits (with a deadline)
// until `useAzureSocketIO` resolved (i.e. the gateway's server tunnel sent
// ConnectionConnected) and the app's HTTP server listens, and registers a
// `t.after` hook that kills it. The app reports what happens (connections,
// events, disconnects) over IPC; `app.waitFor(...)` awaits such reports and
// `app.command(...)` makes the app act (emit, disconnectSockets, ...).
//
// `connectClient(t, app, options)` negotiates with the app and opens a
// socket.io-client socket exactly as the SDK examples' browser code does;
// the socket is closed when the test ends.

import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { io as ioClient } from "socket.io-client";

import { stopChild, waitUntil, withTimeout } from "./gateway.mjs";

const MAIN = fileURLToPath(new URL("./sdk-app-main.mjs", import.meta.url));
const READY_TIMEOUT_MS = 20_000;
const COMMAND_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;

/** Every app process still running, killed on exit as a last resort. */
const live = new Set();
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * The connection string the SDK gets: the documented self-hosting form
 * `Endpoint=http://127.0.0.1;Port=PORT;AccessKey=KEY;Version=1.0;`.
 */
export function sdkConnectionString(gateway) {
  return `Endpoint=http://127.0.0.1;Port=${gateway.port};AccessKey=${gateway.accessKey};Version=1.0;`;
}

/**
 * Starts an SDK application server for test `t`.
 *
 * @param {import("node:test").TestContext} t
 * @param {import("./gateway.mjs").Gateway} gateway
 * @param {object} [options]
 * @param {string} [options.hub]
 * @param {string} [options.name] reported in every event (tells processes apart)
 * @param {boolean} [options.passport] the chat-with-auth-passport flavour
 * @param {"app"|"sdk"} [options.sio] which socket.io copy the app loads
 * @param {string} [options.connectionString] defaults to sdkConnectionString()
 * @param {object} [options.serverOptions] socket.io Server options
 * @param {object} [options.env] extra environment of the app process
 *   (e.g. NODE_EXTRA_CA_CERTS to trust a TLS gateway's CA)
 */
export async function startSdkApp(t, gateway, options = {}) {
  const app = new SdkApp(gateway, options);
  t.after(() => app.stop());
  await app.start();
  return app;
}

export class SdkApp {
  constructor(gateway, { hub = "sdk", name = "app", passport = false, sio = "app", connectionString, serverOptions, env = {} } = {}) {
    this.gateway = gateway;
    this.env = env;
    this.hub = hub;
    this.name = name;
    this.config = {
      name,
      hub,
      passport,
      sio,
      connectionString: connectionString ?? sdkConnectionString(gateway),
      serverOptions,
    };
    this.reports = [];
    this.listeners = new Set();
    this.pending = new Map();
    this.nextId = 1;
    this.output = "";
    this.child = null;
  }

  async start() {
    const child = fork(MAIN, [], {
      env: { ...process.env, ...this.env, SDK_APP_CONFIG: JSON.stringify(this.config) },
      serialization: "advanced",
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    this.child = child;
    live.add(child);
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        this.output = (this.output + chunk).slice(-20_000);
      });
    }
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        for (const { reject } of this.pending.values()) {
          reject(new Error(`app ${this.name} exited (code ${code}, signal ${signal}) before answering`));
        }
        this.pending.clear();
        resolve({ code, signal });
      });
    });
    child.on("message", (message) => this.onMessage(message));

    const ready = new Promise((resolve, reject) => {
      this.onReady = resolve;
      this.exited.then(({ code, signal }) =>
        reject(new Error(`app ${this.name} exited before it was ready (code ${code}, signal ${signal})`)),
      );
    });
    try {
      const { port, socketIoVersion } = await withTimeout(
        ready,
        READY_TIMEOUT_MS,
        `app ${this.name}: useAzureSocketIO() to resolve (the gateway's tunnel to send ConnectionConnected)`,
      );
      this.port = port;
      this.socketIoVersion = socketIoVersion;
      this.baseUrl = `http://127.0.0.1:${port}`;
    } catch (error) {
      error.message += `\napp output:\n${this.output}\ngateway stderr:\n${this.gateway.stderr}`;
      throw error;
    }
  }

  onMessage(message) {
    if (message.type === "ready") {
      this.onReady?.(message);
    } else if (message.type === "report") {
      this.reports.push(message);
      for (const listener of this.listeners) listener(message);
    } else if (message.type === "reply") {
      const waiter = this.pending.get(message.reqId);
      if (!waiter) return;
      this.pending.delete(message.reqId);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new Error(`app ${this.name}: command failed: ${message.error}`));
    }
  }

  /** Sends a command and awaits its reply (with a deadline). */
  command(cmd, fields = {}, timeout = COMMAND_TIMEOUT_MS) {
    if (!this.running) return Promise.reject(new Error(`app ${this.name} is not running`));
    const reqId = this.nextId++;
    const reply = new Promise((resolve, reject) => this.pending.set(reqId, { resolve, reject }));
    this.child.send({ ...fields, reqId, cmd });
    return withTimeout(reply, timeout, `app ${this.name}: reply to ${cmd}`).finally(() => this.pending.delete(reqId));
  }

  /** Reports of `kind` matching `match` (an object of fields or a predicate). */
  seen(kind, match = {}) {
    return this.reports.filter((r) => r.kind === kind && matches(r, match));
  }

  /** Waits for the first report of `kind` matching `match` (past or future). */
  waitFor(kind, match = {}, timeout = 5_000) {
    const already = this.seen(kind, match)[0];
    if (already) return Promise.resolve(already);
    let listener;
    const found = new Promise((resolve) => {
      listener = (r) => {
        if (r.kind === kind && matches(r, match)) resolve(r);
      };
      this.listeners.add(listener);
    });
    return withTimeout(found, timeout, `app ${this.name}: report ${kind} ${describe(match)}`).finally(() =>
      this.listeners.delete(listener),
    );
  }

  /** Waits until `count` reports of `kind` match. */
  async waitForCount(kind, match, count, timeout = 5_000) {
    await waitUntil(() => this.seen(kind, match).length >= count, {
      timeout,
      message: `app ${this.name}: ${count} reports ${kind} ${describe(match)} (have ${this.seen(kind, match).length})`,
    });
    return this.seen(kind, match);
  }

  get running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null && this.child.connected;
  }

  /** Kills the app abruptly (a crash, not a shutdown). */
  async kill(signal = "SIGKILL") {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await withTimeout(this.exited, STOP_TIMEOUT_MS, `app ${this.name} to exit`);
  }

  async stop() {
    if (this.child) await stopChild(this.child, this.exited);
  }
}

function matches(report, match) {
  if (typeof match === "function") return match(report);
  return Object.entries(match).every(([k, v]) => report[k] === v);
}

function describe(match) {
  return typeof match === "function" ? "(predicate)" : JSON.stringify(match);
}

// ---------------------------------------------------------------------------
// Clients

/** GET /negotiate of `app` (with `query` and an optional cookie), parsed. */
export async function negotiateWith(app, { query = {}, cookie } = {}) {
  const url = new URL("/negotiate", app.baseUrl);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const response = await withTimeout(
    fetch(url, { headers: cookie ? { cookie } : {} }),
    5_000,
    `GET ${url}`,
  );
  const body = await response.text();
  if (response.status !== 200) throw new Error(`negotiate answered ${response.status}: ${body}`);
  return JSON.parse(body);
}

/** The payload of a JWT, decoded without verification. */
export function jwtPayload(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

/**
 * A socket.io-client socket to `nsp` through the gateway, as the SDK examples
 * connect: `io(endpoint + nsp, { path, query: { access_token } })`.
 * `negotiated` (the /negotiate answer) is fetched from `app` unless given;
 * `token: null` connects without a token. Not connected yet unless
 * `autoConnect` is left true (the default): await `connected(socket)`.
 */
export async function connectClient(t, app, { nsp = "/", username, negotiated, token, cookie, ...options } = {}) {
  negotiated ??= await negotiateWith(app, { query: username === undefined ? {} : { username }, cookie });
  const accessToken = token === undefined ? negotiated.token : token;
  const opts = {
    path: negotiated.path,
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
    ...options,
  };
  if (accessToken !== null) opts.query = { ...(options.query ?? {}), access_token: accessToken };
  const socket = ioClient(`${negotiated.endpoint}${nsp === "/" ? "" : nsp}`, opts);
  socket.inbox = inbox(socket);
  recordPackets(socket.io);
  // socket.id is cleared on disconnect; `sid` keeps the last one.
  socket.on("connect", () => {
    socket.sid = socket.id;
  });
  t.after(() => {
    socket.io.reconnection(false);
    socket.disconnect();
    socket.io.engine?.close();
  });
  return socket;
}

/**
 * Records every Socket.IO packet the manager (one Engine.IO connection)
 * decodes, whichever namespace it is for, in `manager.packets`
 * ({type, nsp, data}); socket.io-client buffers events of a disconnected
 * socket, so "nothing arrived" is asserted here.
 */
export function recordPackets(manager) {
  if (manager.packets) return manager.packets;
  manager.packets = [];
  manager.on("packet", (packet) => manager.packets.push({ type: packet.type, nsp: packet.nsp, data: packet.data }));
  return manager.packets;
}

/** Resolves when `socket` connects; rejects with the connect_error. */
export function connected(socket, timeout = 10_000) {
  if (socket.connected) return Promise.resolve(socket);
  let onConnect;
  let onError;
  const outcome = new Promise((resolve, reject) => {
    onConnect = () => resolve(socket);
    onError = (error) => reject(error);
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return withTimeout(outcome, timeout, `socket ${socket.nsp} to connect`).finally(() => {
    socket.off("connect", onConnect);
    socket.off("connect_error", onError);
  });
}

/** Resolves with the connect_error of `socket` (fails if it connects). */
export function connectError(socket, timeout = 10_000) {
  let onConnect;
  let onError;
  const outcome = new Promise((resolve, reject) => {
    onConnect = () => reject(new Error(`socket ${socket.nsp} connected, expected a connect_error`));
    onError = (error) => resolve(error);
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return withTimeout(outcome, timeout, `connect_error of socket ${socket.nsp}`).finally(() => {
    socket.off("connect", onConnect);
    socket.off("connect_error", onError);
  });
}

/**
 * Records every event a client socket receives: `items` is a list of
 * `{event, args}`; `waitFor(event, n)` awaits n of them; `of(event)` lists
 * the argument arrays of one event.
 */
export function inbox(socket) {
  const items = [];
  const waiters = new Set();
  const check = () => {
    for (const waiter of waiters) {
      if (waiter.probe()) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  };
  socket.onAny((event, ...args) => {
    items.push({ event, args });
    check();
  });
  socket.on("disconnect", (reason, details) => {
    items.push({ event: "$disconnect", args: [reason, details?.description?.message ?? details?.message] });
    check();
  });
  const of = (event) => items.filter((i) => i.event === event).map((i) => i.args);
  return {
    items,
    of,
    waitFor(event, n = 1, timeout = 5_000) {
      const probe = () => of(event).length >= n;
      if (probe()) return Promise.resolve(of(event));
      const done = new Promise((resolve) => waiters.add({ probe, resolve }));
      return withTimeout(done, timeout, `${n} × "${event}" on client ${socket.id ?? socket.nsp} (have ${of(event).length})`).then(
        () => of(event),
      );
    },
  };
}

/** Emits with an ack and a deadline; resolves with the ack's arguments. */
export function emitAck(socket, event, ...args) {
  return socket.timeout(5_000).emitWithAck(event, ...args);
}

/** Awaits a client "disconnect" (with the reason), with a deadline. */
export async function disconnected(socket, timeout = 5_000) {
  const found = () => socket.inbox.items.find((i) => i.event === "$disconnect");
  await waitUntil(found, { timeout, message: `client ${socket.id} to disconnect` });
  return found().args[0];
}
