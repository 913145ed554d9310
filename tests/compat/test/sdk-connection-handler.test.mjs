// The official server SDK doing its work inside the `connection` handler, as
// most Socket.IO apps do: emits (text, utf-8, binary, `send`), a burst that
// must keep its order, and an emit with an ack the client answers. These
// writes hit the server's Engine.IO socket while its CONNECT answer is still
// travelling through the tunnel, so they are queued in the SDK and must all
// come out, in order, without waiting for the next heartbeat.
//
// The default gateway heartbeat (25 s) is far longer than every wait here: a
// write left behind until the next ping fails these tests.
//
// PORTCULLIS_SDK_ENTRY (see support/sdk-app-main.mjs) runs them against
// another build of the SDK.

import { test } from "node:test";
import assert from "node:assert/strict";

import { startGateway } from "./support/gateway.mjs";
import { connectClient, connected, startSdkApp } from "./support/sdk-app.mjs";
import { normalize } from "./support/sdk-helpers.mjs";

const GREET_BURST = 50; // as in support/sdk-app-main.mjs
const WAIT_MS = 5_000;

for (const [label, transports] of [
  ["polling, then upgrade", undefined],
  ["websocket only", ["websocket"]],
]) {
  test(`connection handler (${label}): its emits, in order, and its ack all complete at once`, async (t) => {
    const gateway = await startGateway(t);
    const app = await startSdkApp(t, gateway);
    const options = transports ? { transports } : {};
    const socket = await connectClient(t, app, { nsp: "/greet", username: "greeted", ...options });
    socket.on("ask", (question, cb) => cb(`yes to ${question}`));
    await connected(socket);

    const { inbox } = socket;
    await inbox.waitFor("welcome", 1, WAIT_MS);
    assert.deepEqual(normalize(inbox.of("welcome")), normalize([["utf8 — ✓", Buffer.from([1, 2, 3])]]));
    await inbox.waitFor("message", 1, WAIT_MS);
    assert.deepEqual(inbox.of("message"), [["via send"]]);

    const burst = Array.from({ length: GREET_BURST }, (_, i) => [i]);
    await inbox.waitFor("seq", GREET_BURST, WAIT_MS);
    assert.deepEqual(inbox.of("seq"), burst, "the burst arrives complete and in order");

    // The server's `socket.timeout(..).emit(.., cb)` gets the client's answer.
    const ack = await app.waitFor("greet-ack", { id: socket.id }, WAIT_MS);
    assert.equal(ack.err, null);
    assert.equal(ack.answer, "yes to ready?");
  });
}
