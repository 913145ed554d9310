// Test support: a cluster of real `portcullis serve` nodes sharing a real
// Redis, behind a real HAProxy that balances every request round-robin with
// no affinity of any kind (so successive requests of one client land on
// different nodes, and the nodes must forward what is not theirs).
//
// `startCluster(t, {nodes: 3, lb: true, extraArgs})` picks free ports,
// starts the nodes on 127.0.0.2, 127.0.0.3, 127.0.0.4, … with the same
// access key, `--redis redis://127.0.0.1:6379` (REDIS_URL overrides; with
// REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,… the nodes use that Redis
// Cluster instead, as `scripts/redis cluster-start DIR` starts one) and
// `--cluster-advertise http://127.0.0.X:PORT`, waits until every node's
// /health counts them all, then starts HAProxy on 127.0.0.1:<free port>
// and waits until it has sent requests to every node. Everything is killed
// when the test ends (or by `stop()`), also when the start fails; the
// nodes' and HAProxy's logs are in `cluster.dir` until then and are added
// to the message of a failed start.
//
// `clusterUnavailable()` says why such a cluster cannot run here (no
// HAProxy, no Redis), or null: tests skip with that reason.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, createWriteStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { BINARY, Gateway, stopChild, waitUntil, withTimeout } from "./gateway.mjs";

/** The Redis the nodes share: $REDIS_URL, or the one of `scripts/redis ensure`. */
export const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";

/** Nodes of a Redis Cluster to use instead (comma-separated URLs), if set. */
export const REDIS_CLUSTER_URLS = process.env.REDIS_CLUSTER_URLS || "";

/** The nodes' Redis flags. */
function redisArgs() {
  if (REDIS_CLUSTER_URLS) return ["--redis", REDIS_CLUSTER_URLS, "--redis-cluster"];
  return ["--redis", REDIS_URL];
}

const ACCESS_KEY = "compat-cluster-access-key";
const HEALTH_TIMEOUT_MS = 20_000;
const LB_TIMEOUT_MS = 15_000;

/** Every HAProxy still running, killed on exit as a last resort. */
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

/** The haproxy binary: $HAPROXY_BIN, on PATH, or in /usr/sbin (not on a user's PATH on Debian). */
export function haproxyBinary() {
  if (process.env.HAPROXY_BIN) return process.env.HAPROXY_BIN;
  for (const dir of [...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/sbin", "/usr/local/sbin"]) {
    const candidate = join(dir, "haproxy");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not there
    }
  }
  return null;
}

/** Resolves true when a Redis answers PING at `url` (redis://host:port). */
export function redisAnswers(url = REDIS_URL, timeout = 2_000) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname || "127.0.0.1", port: Number(port) || 6379 });
    let answer = "";
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeout, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      // +PONG, or -NOAUTH… from a Redis with a password (still a Redis).
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG") || answer.startsWith("-NOAUTH"));
    });
  });
}

/**
 * Why a cluster cannot run here, or null. (CI installs HAProxy and Redis:
 * scripts/install-deps, scripts/redis ensure.)
 */
export async function clusterUnavailable({ lb = true } = {}) {
  if (lb && !haproxyBinary()) {
    return "haproxy is not installed (scripts/install-deps installs it; or set HAPROXY_BIN)";
  }
  if (REDIS_CLUSTER_URLS) {
    for (const url of REDIS_CLUSTER_URLS.split(",")) {
      if (!(await redisAnswers(url))) return `no Redis answers at ${url} (of REDIS_CLUSTER_URLS)`;
    }
  } else if (!(await redisAnswers())) {
    return `no Redis answers at ${REDIS_URL} (start one with scripts/redis ensure, or set REDIS_URL)`;
  }
  return null;
}

/** A free TCP port on `host` (bound, read, released). */
export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

let serveHelp;
/** `portcullis serve --help`, once. */
function serveFlags() {
  serveHelp ??= spawnSync(BINARY, ["serve", "--help"], { encoding: "utf8" }).stdout ?? "";
  return serveHelp;
}

/** A node of the cluster: a Gateway on its own loopback address. */
class ClusterNode extends Gateway {
  constructor(host, port, options) {
    super(options);
    this.host = host;
    const listen = this.args.indexOf("--listen");
    this.args[listen + 1] = `${host}:${port}`;
    this.fixedPort = port;
  }

  async start() {
    await super.start();
    this.baseUrl = `http://${this.host}:${this.port}`;
  }

  wsUrl(hub = "echo") {
    return `ws://${this.host}:${this.port}${this.path(hub)}`;
  }
}

/**
 * Starts a cluster for test `t`; stopped automatically after the test.
 *
 * @param {import("node:test").TestContext} t
 * @param {object} [options]
 * @param {number} [options.nodes] how many nodes (default 3), on 127.0.0.2 upwards
 * @param {boolean} [options.lb] start HAProxy in front (default true)
 * @param {string[]} [options.echoHubs] hubs with the built-in echo application
 * @param {string[]} [options.extraArgs] further `serve` flags for every node
 */
export async function startCluster(t, options = {}) {
  const cluster = new Cluster(options);
  t.after(() => cluster.stop());
  try {
    await cluster.start();
  } catch (error) {
    error.message += `\n${cluster.logs()}`;
    throw error;
  }
  return cluster;
}

export class Cluster {
  constructor({ nodes = 3, lb = true, echoHubs = [], extraArgs = [], accessKey = ACCESS_KEY } = {}) {
    this.size = nodes;
    this.lb = lb;
    this.echoHubs = echoHubs;
    this.extraArgs = extraArgs;
    this.accessKey = accessKey;
    this.dir = mkdtempSync(join(tmpdir(), "portcullis-cluster-"));
    // Keys and channels of this cluster only, when the gateway lets us say
    // so: tests (and other clusters) share one Redis.
    this.prefix = `portcullis-test-${randomBytes(6).toString("hex")}`;
    this.nodes = [];
    this.haproxy = null;
    this.stopped = false;
  }

  /** The `--cluster-…` flag naming the Redis key prefix, if the binary has one. */
  prefixArgs() {
    const help = serveFlags();
    for (const flag of ["--cluster-prefix", "--redis-prefix", "--cluster-name"]) {
      if (new RegExp(`${flag}\\b`).test(help)) return [flag, this.prefix];
    }
    return [];
  }

  async start() {
    const prefix = this.prefixArgs();
    for (let i = 0; i < this.size; i++) {
      const host = `127.0.0.${i + 2}`;
      const port = await freePort(host);
      const node = new ClusterNode(host, port, {
        accessKey: this.accessKey,
        echoHubs: this.echoHubs,
        args: [...redisArgs(), "--cluster-advertise", `http://${host}:${port}`, ...prefix, ...this.extraArgs],
      });
      node.index = i + 1;
      node.logFile = join(this.dir, `node-${i + 1}.log`);
      this.nodes.push(node);
    }
    await Promise.all(
      this.nodes.map(async (node) => {
        await node.start();
        // Everything the node logs from now on, in full, in its file.
        const log = createWriteStream(node.logFile, { flags: "a" });
        log.write(node.stderr);
        node.child.stderr.on("data", (chunk) => log.write(chunk));
        node.child.once("exit", () => log.end());
        node.url = node.baseUrl;
      }),
    );
    // Every node sees every node.
    await Promise.all(
      this.nodes.map(async (node) => {
        let last;
        await waitUntil(
          async () => {
            last = await node.health().catch((error) => ({ error: error.message }));
            return last.nodes === this.size;
          },
          { timeout: HEALTH_TIMEOUT_MS, interval: 100, message: `node ${node.url} /health "nodes" == ${this.size} (last: ${JSON.stringify(last)})` },
        );
        node.id = last.node;
      }),
    );
    if (new Set(this.nodes.map((n) => n.id)).size !== this.size) {
      throw new Error(`node ids are not distinct: ${this.nodes.map((n) => n.id).join(", ")}`);
    }
    if (this.lb) await this.startHaproxy();
  }

  async startHaproxy() {
    const binary = haproxyBinary();
    if (!binary) throw new Error("haproxy is not installed");
    const port = await freePort("127.0.0.1");
    const statsPort = await freePort("127.0.0.1");
    const servers = this.nodes
      .map((n) => `  server node${n.index} ${n.host}:${n.port} check inter 500ms fall 2 rise 1`)
      .join("\n");
    // Round-robin per request, no affinity: no cookie, no stick table, no
    // source hashing, and no reuse of a server connection for a later
    // request (http-server-close, http-reuse never), so each request of a
    // client is balanced on its own. Long enough for long-polling; WebSocket
    // tunnels live up to an hour.
    const config = `global
  maxconn 4096

defaults
  mode http
  option http-server-close
  http-reuse never
  # A request to a node that just died goes to another one.
  option redispatch
  retries 2
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  timeout http-request 10s

frontend portcullis
  bind 127.0.0.1:${port}
  default_backend nodes

backend nodes
  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
${servers}

# Requests per node (lbRequests), to show they really are spread.
listen stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats
`;
    this.haproxyConfig = join(this.dir, "haproxy.cfg");
    writeFileSync(this.haproxyConfig, config);
    const check = spawnSync(binary, ["-c", "-f", this.haproxyConfig], { encoding: "utf8" });
    if (check.status !== 0) throw new Error(`haproxy rejected its configuration:\n${check.stdout}${check.stderr}\n${config}`);

    const child = spawn(binary, ["-f", this.haproxyConfig, "-db"], { stdio: ["ignore", "pipe", "pipe"] });
    this.haproxy = child;
    live.add(child);
    this.haproxyExited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        resolve({ code, signal });
      });
    });
    const log = createWriteStream(join(this.dir, "haproxy.log"));
    child.stdout.pipe(log);
    child.stderr.pipe(log);

    this.lbPort = port;
    this.lbUrl = `http://127.0.0.1:${port}`;
    this.statsUrl = `http://127.0.0.1:${statsPort}/stats;csv`;
    // Up when successive requests have reached every node.
    const seen = new Set();
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`haproxy exited with code ${child.exitCode}`);
        const health = await fetch(`${this.lbUrl}/health`)
          .then((r) => (r.status === 200 ? r.json() : null))
          .catch(() => null);
        if (health?.node) seen.add(health.node);
        return seen.size === this.size;
      },
      { timeout: LB_TIMEOUT_MS, interval: 50, message: `haproxy on ${this.lbUrl} to reach all ${this.size} nodes (reached: ${[...seen].join(", ")})` },
    );
  }

  /**
   * How many HTTP requests (WebSocket handshakes included) HAProxy has sent
   * to each node: an array in node order.
   */
  async lbRequests() {
    const csv = await (await fetch(this.statsUrl)).text();
    const [header, ...rows] = csv.trim().split("\n");
    const columns = header.replace(/^# /, "").split(",");
    const [px, sv, req] = ["pxname", "svname", "req_tot"].map((c) => columns.indexOf(c));
    const counts = new Map();
    for (const row of rows) {
      const cells = row.split(",");
      if (cells[px] === "nodes") counts.set(cells[sv], Number(cells[req]) || 0);
    }
    return this.nodes.map((n) => counts.get(`node${n.index}`) ?? 0);
  }

  /** The connection string of node `i` (0-based), or of the load balancer. */
  connectionString(i) {
    if (i === undefined) {
      return `Endpoint=http://127.0.0.1;Port=${this.lbPort};AccessKey=${this.accessKey};Version=1.0;`;
    }
    const node = this.nodes[i];
    return `Endpoint=http://${node.host};Port=${node.port};AccessKey=${this.accessKey};Version=1.0;`;
  }

  /** A stand-in "gateway" for startSdkApp: the load balancer's port and key, the nodes' logs. */
  get gatewayLike() {
    const cluster = this;
    return {
      port: this.lbPort,
      accessKey: this.accessKey,
      get stderr() {
        return cluster.logs();
      },
    };
  }

  /** The tail of every node's log (and HAProxy's), for failure messages. */
  logs(tail = 6_000) {
    // eslint-disable-next-line no-control-regex
    const plain = (text) => text.replace(/\x1b\[[0-9;]*m/g, "");
    return this.nodes
      .map((n) => `--- node ${n.index} ${n.url ?? ""} id=${n.id ?? "?"} (full log: ${n.logFile}) ---\n${plain(n.stderr ?? "").slice(-tail)}`)
      .join("\n");
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.haproxy) {
      await withTimeout(stopChild(this.haproxy, this.haproxyExited), 5_000, "haproxy to stop").catch(() => {});
    }
    await Promise.all(this.nodes.map((n) => n.stop().catch(() => {})));
    if (!process.env.KEEP_CLUSTER_LOGS) rmSync(this.dir, { recursive: true, force: true });
  }
}
