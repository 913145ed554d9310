// Shared helpers of the sdk-*.test.mjs files.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { startGateway, withTimeout } from "./gateway.mjs";
import { connectClient, connected, startSdkApp } from "./sdk-app.mjs";

/**
 * A gateway, one SDK app on `hub`, and `clients` connected socket.io-client
 * sockets (named c0, c1, … via `username`).
 */
export async function setup(t, { clients = 0, hub = "sdk", gateway: gatewayOptions, app: appOptions, client: clientOptions } = {}) {
  const gateway = await startGateway(t, gatewayOptions);
  const app = await startSdkApp(t, gateway, { hub, ...appOptions });
  const sockets = [];
  for (let i = 0; i < clients; i++) {
    const socket = await connectClient(t, app, { username: `c${i}`, ...clientOptions });
    sockets.push(socket);
  }
  await Promise.all(sockets.map((s) => connected(s)));
  // The app has seen every connection (so server-side sockets exist).
  await Promise.all(sockets.map((s) => app.waitFor("connection", { id: s.id })));
  return { gateway, app, sockets };
}

/**
 * Makes negative assertions race-free: the app broadcasts a unique "barrier"
 * event to `nsp` after whatever it sent before; once every socket in
 * `sockets` has it, anything sent earlier to them has arrived too (the
 * gateway keeps the order of one server's sends per connection).
 */
export async function barrier(app, sockets, { nsp = "/", timeout = 5_000 } = {}) {
  const token = randomUUID();
  await app.command("emit", { target: { nsp }, event: "barrier", args: [token] });
  await Promise.all(
    sockets.map((s) =>
      withTimeout(
        new Promise((resolve) => {
          const check = () => s.inbox.of("barrier").some((args) => args[0] === token);
          if (check()) return resolve();
          const listener = (event, value) => {
            if (event === "barrier" && value === token) {
              s.offAny(listener);
              resolve();
            }
          };
          s.onAny(listener);
        }),
        timeout,
        `barrier ${token} at client ${s.id}`,
      ),
    ),
  );
}

/** The argument lists of `event` received by `socket`. */
export function received(socket, event) {
  return socket.inbox.of(event);
}

/** Asserts `socket` received `event` exactly with `expected` argument lists. */
export function assertReceived(socket, event, expected, label = "") {
  assert.deepEqual(normalize(received(socket, event)), normalize(expected), `${label} client ${socket.id} "${event}"`);
}

/** Buffers, Uint8Arrays and ArrayBuffers as {bin: hex}, recursively. */
export function normalize(value) {
  if (value instanceof ArrayBuffer) return { bin: Buffer.from(value).toString("hex") };
  if (ArrayBuffer.isView(value)) return { bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex") };
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  return value;
}

/** `socket.timeout(ms).emit(event, ...args, cb)`, resolving with all ack args. */
export function emitAckAll(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(5_000).emit(event, ...args, (err, ...response) => (err ? reject(err) : resolve(response)));
  });
}

/** The EVENT packets of `event` that reached `manager` for namespace `nsp`. */
export function eventsOn(manager, nsp, event) {
  return (manager.packets ?? [])
    .filter((p) => (p.type === 2 || p.type === 5) && p.nsp === nsp && Array.isArray(p.data) && p.data[0] === event)
    .map((p) => p.data.slice(1));
}
