// Test support: runs the real `portcullis` binary for one test.
//
// `startGateway(t, options)` spawns `portcullis serve` on 127.0.0.1:0, reads
// the connection string from its first stdout line, and registers a
// `t.after` hook that closes everything the test opened and then kills the
// process (also when the test fails or throws). A process-exit hook kills any
// gateway still alive, so an aborted run leaves nothing behind either.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import jwt from "jsonwebtoken";

/** The repository root (tests/compat/test/support → ../../../../). */
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

/** The gateway binary: $PORTCULLIS_BIN, or the debug build of the workspace. */
export const BINARY =
  process.env.PORTCULLIS_BIN || join(REPO_ROOT, "target", "debug", process.platform === "win32" ? "portcullis.exe" : "portcullis");

const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 3_000;

/** Every gateway process still running, killed on exit as a last resort. */
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

function assertBinary() {
  if (!existsSync(BINARY)) {
    throw new Error(
      `portcullis binary not found at ${BINARY}.\n` +
        "Build it first with `cargo build --bin portcullis` (from the repository root), " +
        "or point PORTCULLIS_BIN at an existing binary.",
    );
  }
}

/** The environment for the gateway: ours minus PORTCULLIS_* settings, so a
 * developer's shell cannot change what the tests start. */
function childEnv() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("PORTCULLIS_") && key !== "PORTCULLIS_LOG") continue;
    env[key] = value;
  }
  return env;
}

/**
 * Resolves with `promise`, or rejects after `ms` with a message naming `what`.
 */
/**
 * Stops a child process: SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; resolves
 * once `exited` (the child's exit promise) has.
 */
export async function stopChild(child, exited) {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    let timer;
    const forced = new Promise((resolve) => {
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve();
      }, STOP_TIMEOUT_MS);
    });
    await Promise.race([exited, forced]);
    clearTimeout(timer);
  }
  await exited;
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Waits for one `event` of an emitter (node EventEmitter or the
 * component-emitter of engine.io-client), rejecting after `ms`. Resolves with
 * the event's arguments as an array.
 */
export function nextEvent(emitter, event, ms = 5_000) {
  let listener;
  const seen = new Promise((resolve) => {
    listener = (...args) => resolve(args);
    emitter.once(event, listener);
  });
  return withTimeout(seen, ms, `event "${event}"`).finally(() => {
    (emitter.off ?? emitter.removeListener).call(emitter, event, listener);
  });
}

/**
 * Polls `probe` (sync or async) until it returns a truthy value; returns that
 * value. Fails after `timeout` ms with `message` and the last value seen.
 */
export async function waitUntil(probe, { timeout = 5_000, interval = 25, message = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (last value: ${JSON.stringify(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Starts a gateway for test `t`; stopped automatically after the test.
 *
 * @param {import("node:test").TestContext} t
 * @param {object} [options]
 * @param {string} [options.accessKey]
 * @param {string[]} [options.echoHubs] hubs with the built-in echo application
 * @param {number} [options.pingIntervalMs]
 * @param {number} [options.pingTimeoutMs]
 * @param {number} [options.maxPayload]
 * @param {boolean} [options.allowAnonymous]
 * @param {number} [options.drainPeriodMs] over how long SIGTERM closes the
 *   clients (default 0 here: a test's gateway stops at once)
 * @param {string[]} [options.args] further `serve` flags
 */
export async function startGateway(t, options = {}) {
  assertBinary();
  const gateway = new Gateway(options);
  // Register the cleanup before starting, so a failed start is cleaned too.
  t.after(() => gateway.stop());
  await gateway.start();
  return gateway;
}

export class Gateway {
  constructor({
    accessKey = "compat-test-access-key",
    echoHubs = ["echo"],
    pingIntervalMs,
    pingTimeoutMs,
    maxPayload,
    allowAnonymous = false,
    drainPeriodMs = 0,
    args = [],
  } = {}) {
    this.accessKey = accessKey;
    this.args = ["serve", "--listen", "127.0.0.1:0", "--access-key", accessKey];
    for (const hub of echoHubs) this.args.push("--echo-hub", hub);
    if (pingIntervalMs !== undefined) this.args.push("--ping-interval-ms", String(pingIntervalMs));
    if (pingTimeoutMs !== undefined) this.args.push("--ping-timeout-ms", String(pingTimeoutMs));
    if (maxPayload !== undefined) this.args.push("--max-payload", String(maxPayload));
    if (allowAnonymous) this.args.push("--allow-anonymous");
    this.args.push("--drain-period-ms", String(drainPeriodMs));
    this.args.push(...args);
    this.stderr = "";
    this.child = null;
    this.exited = null;
    this.cleanups = [];
  }

  async start() {
    const child = spawn(BINARY, this.args, {
      cwd: REPO_ROOT,
      env: childEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        resolve({ code, signal });
      });
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      // Keep the tail only: enough for a failure message.
      this.stderr = (this.stderr + chunk).slice(-20_000);
    });

    const lines = createInterface({ input: child.stdout });
    const firstLine = new Promise((resolve, reject) => {
      lines.once("line", resolve);
      child.once("error", reject);
      this.exited.then(({ code, signal }) =>
        reject(new Error(`portcullis exited before printing its connection string (code ${code}, signal ${signal})`)),
      );
    });
    let line;
    try {
      line = await withTimeout(firstLine, STARTUP_TIMEOUT_MS, "the connection string on stdout");
    } catch (error) {
      error.message += `\ncommand: ${BINARY} ${this.args.join(" ")}\nstderr:\n${this.stderr}`;
      throw error;
    }
    // Drain any further stdout so the pipe never fills.
    lines.on("line", () => {});

    this.connectionString = line.trim();
    const match = /^Endpoint=(https?:\/\/[^;]+?):(\d+)\/?;.*AccessKey=([^;]*);/.exec(this.connectionString);
    if (!match) {
      throw new Error(`unexpected first stdout line from portcullis: ${JSON.stringify(line)}`);
    }
    this.port = Number(match[2]);
    // https when started with --tls-cert.
    this.tls = match[1].startsWith("https:");
    this.baseUrl = `${this.tls ? "https" : "http"}://127.0.0.1:${this.port}`;
    if (match[3] !== this.accessKey) {
      throw new Error(`connection string names access key ${match[3]}, expected ${this.accessKey}`);
    }
  }

  /** The engine.io `path` option for a hub. */
  path(hub = "echo") {
    return `/clients/socketio/hubs/${hub}/`;
  }

  /** The client endpoint URL of a hub (with a trailing slash). */
  hubUrl(hub = "echo") {
    return `${this.baseUrl}${this.path(hub)}`;
  }

  /** The same endpoint as ws:// (wss:// with TLS). */
  wsUrl(hub = "echo") {
    return `${this.tls ? "wss" : "ws"}://127.0.0.1:${this.port}${this.path(hub)}`;
  }

  /**
   * An HS256 client token, as the application's negotiate would mint it.
   * `key`, `aud` and `expiresInSeconds` can be overridden to make bad ones.
   */
  token({ hub = "echo", user = "compat-user", key = this.accessKey, aud, expiresInSeconds = 600 } = {}) {
    const now = Math.floor(Date.now() / 1000);
    return jwt.sign(
      {
        aud: aud ?? `http://localhost/clients/socketio/hubs/${hub}`,
        sub: user,
        iat: now,
        exp: now + expiresInSeconds,
      },
      key,
      { algorithm: "HS256", noTimestamp: true },
    );
  }

  /** GET /health, parsed. */
  async health() {
    const response = await fetch(`${this.baseUrl}/health`);
    if (response.status !== 200) throw new Error(`/health answered ${response.status}`);
    return response.json();
  }

  /** The number of client connections /health reports. */
  async connections() {
    return (await this.health()).connections;
  }

  /** Polls /health until it reports `expected` connections. */
  async waitForConnections(expected, timeout = 5_000) {
    let last;
    await waitUntil(
      async () => {
        last = await this.connections();
        return last === expected;
      },
      { timeout, message: `/health connections == ${expected} (last: ${last})` },
    );
  }

  /** True while the gateway process runs. */
  get running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Runs `fn` when the test ends, before the gateway is killed (sockets to close). */
  defer(fn) {
    this.cleanups.push(fn);
  }

  async stop() {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // cleanup is best effort; the kill below ends everything anyway
      }
    }
    const child = this.child;
    if (!child) return;
    await stopChild(child, this.exited);
    child.stdout?.destroy();
    child.stderr?.destroy();
  }
}
