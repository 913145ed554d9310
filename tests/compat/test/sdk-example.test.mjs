// The runnable example app examples/node-chat (the SDK's chat-with-negotiate,
// trimmed) against the real gateway: it is started as a user would start it,
// with only PORTCULLIS_CONNECTION_STRING set, and two socket.io-client
// clients chat through the gateway.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { REPO_ROOT, startGateway, withTimeout } from "./support/gateway.mjs";
import { connectClient, connected, emitAck, jwtPayload, negotiateWith } from "./support/sdk-app.mjs";

const EXAMPLE = join(REPO_ROOT, "examples", "node-chat");
const COMPAT = join(REPO_ROOT, "tests", "compat", "node_modules");

/**
 * Starts examples/node-chat/index.js. Its own node_modules are used when it
 * was installed (`npm ci` in the example); otherwise NODE_PATH lends it this
 * suite's packages, the SDK's own socket.io copy first (the example, like the
 * SDK's, uses the socket.io the SDK depends on).
 */
async function startExample(t, gateway) {
  const nodePath = [join(COMPAT, "@azure", "web-pubsub-socket.io", "node_modules"), COMPAT].join(":");
  const child = spawn(process.execPath, ["index.js"], {
    cwd: EXAMPLE,
    env: {
      ...process.env,
      PORTCULLIS_CONNECTION_STRING: `Endpoint=http://127.0.0.1;Port=${gateway.port};AccessKey=${gateway.accessKey};Version=1.0;`,
      PORT: "0",
      NODE_PATH: existsSync(join(EXAMPLE, "node_modules")) ? "" : nodePath,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const lines = createInterface({ input: child.stdout });
  const url = new Promise((resolve) =>
    lines.on("line", (line) => {
      const match = /(http:\/\/localhost:\d+)/.exec(line);
      if (match) resolve(match[1].replace("localhost", "127.0.0.1"));
    }),
  );
  try {
    return await withTimeout(url, 20_000, "the example to print its URL");
  } catch (error) {
    error.message += `\nexample stderr:\n${stderr}`;
    throw error;
  }
}

test("examples/node-chat: two users chat through the gateway", async (t) => {
  const gateway = await startGateway(t);
  const baseUrl = await startExample(t, gateway);
  const app = { baseUrl };

  const page = await fetch(`${baseUrl}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /\/vendor\/socket\.io\.js/);
  const bundle = await fetch(`${baseUrl}/vendor/socket.io.js`);
  assert.equal(bundle.status, 200);
  await bundle.arrayBuffer();

  const negotiated = await negotiateWith(app, { query: { username: "alice" } });
  assert.equal(negotiated.path, "/clients/socketio/hubs/chat");
  assert.equal(jwtPayload(negotiated.token).userId, "alice");

  const alice = await connectClient(t, app, { negotiated });
  const bob = await connectClient(t, app, { username: "bob" });
  await Promise.all([connected(alice), connected(bob)]);

  assert.deepEqual(await emitAck(alice, "add user", "alice"), { numUsers: 1 });
  assert.deepEqual(await emitAck(bob, "add user", "bob"), { numUsers: 2 });
  const [[joined]] = await alice.inbox.waitFor("user joined");
  assert.deepEqual(joined, { username: "bob", numUsers: 2 });

  alice.emit("new message", "hi bob");
  const [[message]] = await bob.inbox.waitFor("new message");
  assert.deepEqual(message, { username: "alice", message: "hi bob" });

  bob.disconnect();
  const [[left]] = await alice.inbox.waitFor("user left");
  assert.deepEqual(left, { username: "bob", numUsers: 1 });
  assert.equal(alice.inbox.of("new message").length, 0, "a sender does not get its own broadcast");
});
