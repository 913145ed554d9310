// TLS: the real engine.io-client and socket.io-client over https:// and
// wss:// against the real portcullis binary started with --tls-cert and
// --tls-key, trusting the test's CA with the clients' `ca` option. The
// certificate is made by scripts/dev-cert (OpenSSL), as the README tells
// operators to.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Socket } from "engine.io-client";

import { REPO_ROOT, nextEvent, startGateway, waitUntil, withTimeout } from "./support/gateway.mjs";
import { connectClient, connected, negotiateWith, startSdkApp } from "./support/sdk-app.mjs";

const HUB = "echo";

/** A fresh CA and server certificate in a temporary directory. */
function devCert(t) {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(join(REPO_ROOT, "scripts", "dev-cert"), [dir], { stdio: "ignore" });
  return {
    dir,
    ca: readFileSync(join(dir, "ca.pem"), "utf8"),
    cert: join(dir, "cert.pem"),
    key: join(dir, "key.pem"),
  };
}

async function tlsGateway(t) {
  const pki = devCert(t);
  const gw = await startGateway(t, { args: ["--tls-cert", pki.cert, "--tls-key", pki.key] });
  assert.ok(gw.connectionString.startsWith("Endpoint=https://"), gw.connectionString);
  assert.ok(gw.baseUrl.startsWith("https://"));
  return { gw, ca: pki.ca };
}

/** An engine.io-client socket over TLS, closed after the test. */
function eio(gw, ca, options) {
  const socket = new Socket(gw.baseUrl, {
    path: gw.path(HUB),
    query: { access_token: gw.token({ hub: HUB }) },
    ca,
    ...options,
  });
  socket.on("error", () => {});
  gw.defer(() => socket.close());
  return socket;
}

async function echoes(socket, text) {
  const got = nextEvent(socket, "message");
  socket.send(text);
  const [data] = await got;
  assert.equal(data, text);
}

for (const [name, options] of [
  ["polling over https", { transports: ["polling"] }],
  ["websocket over wss", { transports: ["websocket"] }],
  ["polling upgraded to websocket over TLS", { transports: ["polling", "websocket"] }],
]) {
  test(`engine.io-client: ${name}, echo`, async (t) => {
    const { gw, ca } = await tlsGateway(t);
    const socket = eio(gw, ca, options);
    await nextEvent(socket, "open");
    if (options.transports.length === 2) {
      await nextEvent(socket, "upgrade");
      assert.equal(socket.transport.name, "websocket");
    } else {
      assert.equal(socket.transport.name, options.transports[0]);
    }
    await echoes(socket, `hello, ${name}`);
  });
}

test("engine.io-client: a CA it does not trust fails the connection", async (t) => {
  const { gw } = await tlsGateway(t);
  const stranger = devCert(t).ca;
  for (const transports of [["polling"], ["websocket"]]) {
    const socket = eio(gw, stranger, { transports });
    const [error] = await Promise.race([
      nextEvent(socket, "error"),
      nextEvent(socket, "open").then(() => {
        throw new Error("connected despite an untrusted certificate");
      }),
    ]);
    assert.ok(error, `an error over ${transports}`);
  }
});

for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
  test(`socket.io-client (${transports.join(" then ")}) and the official SDK's tunnel, both over TLS`, async (t) => {
    const pki = devCert(t);
    const gw = await startGateway(t, { args: ["--tls-cert", pki.cert, "--tls-key", pki.key] });
    // The app server reaches the gateway at https:// (its tunnel is wss://)
    // and trusts the CA the way Node programs do.
    const app = await startSdkApp(t, gw, {
      connectionString: `Endpoint=https://127.0.0.1;Port=${gw.port};AccessKey=${gw.accessKey};Version=1.0;`,
      env: { NODE_EXTRA_CA_CERTS: join(pki.dir, "ca.pem") },
    });
    const socket = await connectClient(t, app, { username: "alice", ca: pki.ca, transports });
    await connected(socket);
    const negotiated = await negotiateWith(app, { query: { username: "bob" } });
    assert.ok(negotiated.endpoint.startsWith("https://"), negotiated.endpoint);
    const answer = await withTimeout(socket.emitWithAck("echo", "over TLS", 42), 5_000, "the echo ack");
    assert.deepEqual(answer, "over TLS");
    if (transports.length === 2) {
      await waitUntil(() => socket.io.engine.transport.name === "websocket", { message: "the upgrade" });
    } else {
      assert.equal(socket.io.engine.transport.name, transports[0]);
    }
  });
}
