// The official server SDK (child process) with real socket.io-client clients
// through the real gateway: emits both ways with acks, binary attachments,
// rooms, broadcasts (namespace, rooms, except, socket.broadcast), broadcast
// with acks (emitWithAck + timeout), disconnects, namespaces and middleware
// refusals.

import { test } from "node:test";
import assert from "node:assert/strict";

import { waitUntil } from "./support/gateway.mjs";
import { connectClient, connected, connectError, disconnected, emitAck, inbox } from "./support/sdk-app.mjs";
import { assertReceived, barrier, emitAckAll, eventsOn, normalize, setup } from "./support/sdk-helpers.mjs";

const bin = (...bytes) => Buffer.from(bytes);

test("emits both ways, with acks both ways", async (t) => {
  const { app, sockets } = await setup(t, { clients: 1 });
  const [c] = sockets;
  c.on("question", (q, cb) => cb(`answer:${q}`));

  // client → server, no ack
  c.emit("hello", 1, "two", { three: [3] });
  const event = await app.waitFor("event", { id: c.id, event: "hello" });
  assert.deepEqual(event.args, [1, "two", { three: [3] }]);

  // client → server with ack (several ack arguments)
  assert.deepEqual(await emitAckAll(c, "echo", "a", { b: 2 }, [null, true]), ["a", { b: 2 }, [null, true]]);
  // a burst of acked emits, answered out of nothing but their ids
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => emitAck(c, "echo", i)));
  assert.deepEqual(answers, Array.from({ length: 20 }, (_, i) => i));

  // server → client, no ack
  await app.command("emit", { target: { socket: c.id }, event: "news", args: ["fresh", { n: 1 }] });
  await c.inbox.waitFor("news");
  assertReceived(c, "news", [["fresh", { n: 1 }]]);

  // server → client with ack
  const reply = await app.command("emitWithAck", { target: { socket: c.id, timeout: 3_000 }, event: "question", args: ["q1"] });
  assert.deepEqual(reply, { err: null, responses: "answer:q1", elapsed: reply.elapsed });

  // server → client with ack, client does not answer: the server's timeout fires
  const silent = await app.command("emitWithAck", { target: { socket: c.id, timeout: 300 }, event: "unanswered", args: [] });
  assert.equal(silent.err, "operation has timed out");
});

test("binary attachments both ways (events, acks, broadcasts)", async (t) => {
  const { app, sockets } = await setup(t, { clients: 2 });
  const [c0, c1] = sockets;
  c0.on("binq", (buf, cb) => cb(Buffer.concat([buf, bin(0xff)]), { inner: bin(7, 7) }));

  // client → server event with attachments
  c0.emit("upload", bin(1, 2, 3), { nested: bin(4, 5), list: [bin(), bin(6)] }, "text");
  const upload = await app.waitFor("event", { id: c0.id, event: "upload" });
  assert.deepEqual(normalize(upload.args), normalize([bin(1, 2, 3), { nested: bin(4, 5), list: [bin(), bin(6)] }, "text"]));

  // client → server with a binary ack back
  const echoed = await emitAckAll(c0, "echo", bin(0, 1, 254, 255), { b: bin(9) });
  assert.deepEqual(normalize(echoed), normalize([bin(0, 1, 254, 255), { b: bin(9) }]));

  // server → client event with attachments
  await app.command("emit", { target: { socket: c0.id }, event: "download", args: [bin(10, 11), { x: bin(12) }] });
  await c0.inbox.waitFor("download");
  assertReceived(c0, "download", [[bin(10, 11), { x: bin(12) }]]);

  // server → client with a binary ack (client answers BINARY_ACK)
  const reply = await app.command("emitWithAckCallback", {
    target: { socket: c0.id, timeout: 3_000 },
    event: "binq",
    args: [bin(1)],
  });
  assert.equal(reply.err, null);
  // socket.timeout().emit(cb) passes the client's ack arguments after err.
  assert.deepEqual(normalize(reply.responses), normalize(bin(1, 0xff)));

  // broadcast with an attachment reaches everyone
  await app.command("emit", { target: {}, event: "binall", args: [bin(42), "tail"] });
  await Promise.all(sockets.map((s) => s.inbox.waitFor("binall")));
  for (const s of [c0, c1]) assertReceived(s, "binall", [[bin(42), "tail"]]);
  // a large binary (256 KiB) round trip
  const big = Buffer.alloc(256 * 1024, 0xab);
  const [back] = await emitAckAll(c1, "echo", big);
  assert.ok(Buffer.from(back).equals(big), "256 KiB binary came back intact");
});

test("rooms: join, leave, socketsJoin, socketsLeave", async (t) => {
  const { app, sockets } = await setup(t, { clients: 3 });
  const [a, b, c] = sockets;

  assert.deepEqual((await emitAck(a, "join", "r1")).sort(), [a.id, "r1"].sort());
  assert.deepEqual((await emitAck(b, "join", ["r1", "r2"])).sort(), [b.id, "r1", "r2"].sort());

  await app.command("emit", { target: { to: "r1" }, event: "to-r1", args: [1] });
  await barrier(app, sockets);
  assertReceived(a, "to-r1", [[1]]);
  assertReceived(b, "to-r1", [[1]]);
  assertReceived(c, "to-r1", []);

  // leave
  assert.deepEqual(await emitAck(a, "leave", "r1"), [a.id]);
  await app.command("emit", { target: { to: "r1" }, event: "to-r1", args: [2] });
  await barrier(app, sockets);
  assertReceived(a, "to-r1", [[1]]);
  assertReceived(b, "to-r1", [[1], [2]]);

  // io.in("r2").socketsJoin("r3") (by filter at the gateway), then emit to r3
  await app.command("socketsJoin", { target: { to: "r2" }, rooms: "r3" });
  await app.command("emit", { target: { to: "r3" }, event: "to-r3", args: ["x"] });
  await barrier(app, sockets);
  assertReceived(a, "to-r3", []);
  assertReceived(b, "to-r3", [["x"]]);
  assertReceived(c, "to-r3", []);

  // io.socketsLeave("r3"): nobody in r3 any more
  await app.command("socketsLeave", { target: {}, rooms: "r3" });
  await app.command("emit", { target: { to: "r3" }, event: "to-r3", args: ["y"] });
  await barrier(app, sockets);
  assertReceived(b, "to-r3", [["x"]]);

  // a socket's own id is a room
  await app.command("emit", { target: { to: c.id }, event: "private", args: ["p"] });
  await barrier(app, sockets);
  assertReceived(a, "private", []);
  assertReceived(b, "private", []);
  assertReceived(c, "private", [["p"]]);
});

test("broadcast: namespace, rooms, except rooms, socket.broadcast", async (t) => {
  const { app, sockets } = await setup(t, { clients: 4 });
  const [a, b, c, d] = sockets;
  await emitAck(a, "join", "r1");
  await emitAck(b, "join", ["r1", "r2"]);
  await emitAck(c, "join", "r2");
  // d is in no room

  const expect = async (target, recipients, label) => {
    const event = `bc-${label}`;
    await app.command("emit", { target, event, args: [label] });
    await barrier(app, sockets);
    for (const s of sockets) {
      assertReceived(s, event, recipients.includes(s) ? [[label]] : [], label);
    }
  };

  await expect({}, [a, b, c, d], "namespace");
  await expect({ to: "r1" }, [a, b], "room");
  await expect({ to: ["r1", "r2"] }, [a, b, c], "two-rooms");
  await expect({ to: "r1", except: "r2" }, [a], "room-except");
  await expect({ except: "r1" }, [c, d], "except-only");
  await expect({ except: ["r1", "r2"] }, [d], "except-two");
  await expect({ to: "nobody" }, [], "empty-room");
  // broadcast operator of one socket: everyone but that socket (server API)
  await expect({ from: b.id }, [a, c, d], "socket-broadcast");
  await expect({ from: b.id, to: "r1" }, [a], "socket-broadcast-room");

  // socket.broadcast.emit triggered by a client event
  a.emit("broadcast", "from-a", { hello: "all" });
  await Promise.all([b, c, d].map((s) => s.inbox.waitFor("from-a")));
  await barrier(app, sockets);
  assertReceived(a, "from-a", []);
  for (const s of [b, c, d]) assertReceived(s, "from-a", [[{ hello: "all" }]]);
});

test("broadcast with acks: all answer, one does not (timeout, partial responses), 0 clients", async (t) => {
  const { app, sockets } = await setup(t, { clients: 3 });
  const [a, b, c] = sockets;
  for (const [s, name] of [
    [a, "a"],
    [b, "b"],
  ]) {
    s.on("ask", (q, cb) => cb(`${name}:${q}`));
  }
  c.on("ask", (q, cb) => {
    if (q !== "silent-c") cb(`c:${q}`);
  });

  // everyone answers (promise form)
  const all = await app.command("emitWithAck", { target: { timeout: 5_000 }, event: "ask", args: ["q1"] });
  assert.equal(all.err, null);
  assert.deepEqual([...all.responses].sort(), ["a:q1", "b:q1", "c:q1"]);
  assert.ok(all.elapsed < 4_000, `took ${all.elapsed} ms: the stream was not ended when all had answered`);

  // c stays silent: timeout, with a's and b's answers present
  const partial = await app.command("emitWithAckCallback", { target: { timeout: 1_500 }, event: "ask", args: ["silent-c"] });
  assert.equal(partial.err, "operation has timed out");
  assert.deepEqual([...partial.responses].sort(), ["a:silent-c", "b:silent-c"]);

  // and the emitWithAck promise form rejects
  const rejected = await app.command("emitWithAck", { target: { timeout: 1_000 }, event: "ask", args: ["silent-c"] });
  assert.equal(rejected.err, "operation has timed out");

  // rooms + excepts with acks, while the earlier streams may still be open
  await emitAck(a, "join", "r");
  await emitAck(c, "join", "r");
  const roomed = await app.command("emitWithAck", { target: { to: "r", except: [c.id], timeout: 5_000 }, event: "ask", args: ["q2"] });
  assert.deepEqual(roomed.responses, ["a:q2"]);

  // binary in the broadcast and in the answers
  a.on("bask", (buf, cb) => cb(Buffer.concat([buf, bin(1)])));
  b.on("bask", (buf, cb) => cb(Buffer.concat([buf, bin(2)])));
  c.on("bask", (buf, cb) => cb(Buffer.concat([buf, bin(3)])));
  const binary = await app.command("emitWithAck", { target: { timeout: 5_000 }, event: "bask", args: [bin(9)] });
  assert.equal(binary.err, null);
  assert.deepEqual(
    binary.responses.map((r) => Buffer.from(r).toString("hex")).sort(),
    ["0901", "0902", "0903"],
  );

  // 0 clients: resolves at once with no responses (long before the timeout)
  const none = await app.command("emitWithAck", { target: { to: "nobody", timeout: 10_000 }, event: "ask", args: ["q3"] });
  assert.equal(none.err, null);
  assert.deepEqual(none.responses, []);
  assert.ok(none.elapsed < 5_000, `emitWithAck to 0 clients took ${none.elapsed} ms`);

  // socket.broadcast with acks (chat-with-ack): everyone but a answers
  const fromA = await app.command("emitWithAck", { target: { from: a.id, timeout: 5_000 }, event: "ask", args: ["q4"] });
  assert.deepEqual([...fromA.responses].sort(), ["b:q4", "c:q4"]);
});

/** A "/chat" socket over the same manager (Engine.IO connection) as `socket`. */
async function chatOf(socket) {
  const chat = socket.io.socket("/chat");
  chat.inbox = inbox(chat);
  await connected(chat);
  return chat;
}

test("disconnectSockets(false): namespace sockets leave, the connection stays", async (t) => {
  const { gateway, app, sockets } = await setup(t, { clients: 2 });
  const [a, b] = sockets;
  // A second namespace on each connection: socket.io-client closes a
  // manager's connection when its last socket is gone, so this keeps it open.
  const chats = await Promise.all(sockets.map(chatOf));
  const engineIds = sockets.map((s) => s.io.engine.id);
  const ids = sockets.map((s) => s.id);

  await app.command("disconnectSockets", { target: {}, close: false });
  for (const s of sockets) assert.equal(await disconnected(s), "io server disconnect");
  for (const id of ids) {
    const report = await app.waitFor("disconnect", { id });
    assert.equal(report.reason, "client namespace disconnect");
  }
  // The "/chat" sockets and the Engine.IO connections are untouched.
  for (const s of sockets) assert.equal(s.io.engine.readyState, "open");
  for (const c of chats) assert.equal(c.connected, true);
  assert.equal(await gateway.connections(), 2);
  assert.equal(await emitAck(chats[1], "echo", "chat alive"), "chat alive");

  // "/" can connect again over the same connection.
  a.connect();
  await connected(a);
  assert.equal(a.io.engine.id, engineIds[0]);
  assert.equal(await emitAck(a, "echo", "again"), "again");
  // b, still out of "/", gets no "/" broadcast any more (the gateway took its
  // connection out of the namespace group); the "/chat" barrier proves the
  // earlier "/" emit has been delivered wherever it was going.
  await app.command("emit", { target: {}, event: "after", args: [1] });
  await a.inbox.waitFor("after");
  await barrier(app, [chats[1]], { nsp: "/chat" });
  assert.deepEqual(eventsOn(b.io, "/", "after"), []);
});

test("disconnectSockets(true) closes the connections; in a room only its members", async (t) => {
  const { gateway, app, sockets } = await setup(t, { clients: 3 });
  const [a, b, c] = sockets;
  await emitAck(a, "join", "doomed");

  await app.command("disconnectSockets", { target: { to: "doomed" }, close: true });
  assert.equal(await disconnected(a), "io server disconnect");
  const report = await app.waitFor("disconnect", { id: a.sid });
  assert.ok(["transport close", "client namespace disconnect", "server namespace disconnect"].includes(report.reason), report.reason);
  await waitUntil(() => a.io.engine.readyState === "closed", { message: "a's engine to close" });
  await gateway.waitForConnections(2);
  // b and c undisturbed
  assert.equal(await emitAck(b, "echo", "b"), "b");
  assert.equal(await emitAck(c, "echo", "c"), "c");

  await app.command("disconnectSockets", { target: {}, close: true });
  for (const s of [b, c]) assert.equal(await disconnected(s), "io server disconnect");
  for (const s of [b, c]) await app.waitFor("disconnect", { id: s.sid });
  await gateway.waitForConnections(0);
  // the app's Engine.IO sockets are closed too (the gateway sent disconnected)
  await app.waitForCount("eio-close", {}, 3);
});

test("socket.disconnect(true) closes the connection; socket.disconnect() only the namespace", async (t) => {
  const { gateway, app, sockets } = await setup(t, { clients: 2 });
  const [a, b] = sockets;

  await app.command("socketDisconnect", { id: a.id, close: true });
  assert.equal(await disconnected(a), "io server disconnect");
  assert.equal((await app.waitFor("disconnect", { id: a.sid })).reason, "server namespace disconnect");
  await waitUntil(() => a.io.engine.readyState === "closed", { message: "a's engine to close" });
  await gateway.waitForConnections(1);
  await app.waitFor("eio-close", { connId: (await app.waitFor("connection", { id: a.sid })).connId });

  const bChat = await chatOf(b); // keeps b's connection open (see above)
  await app.command("socketDisconnect", { id: b.id, close: false });
  assert.equal(await disconnected(b), "io server disconnect");
  assert.equal((await app.waitFor("disconnect", { id: b.sid })).reason, "server namespace disconnect");
  assert.equal(b.io.engine.readyState, "open");
  assert.equal(bChat.connected, true);
  assert.equal(await gateway.connections(), 1);
  b.connect();
  await connected(b);
  assert.equal(await emitAck(b, "echo", "still here"), "still here");
});

test("client-side disconnect reaches the app; the gateway forgets the connection", async (t) => {
  const { gateway, app, sockets } = await setup(t, { clients: 2 });
  const [a, b] = sockets;
  a.disconnect();
  assert.equal((await app.waitFor("disconnect", { id: a.sid })).reason, "client namespace disconnect");
  await gateway.waitForConnections(1);
  await app.waitForCount("eio-close", {}, 1);
  assert.equal(await emitAck(b, "echo", 1), 1);
});

test("namespaces: multiplexing, per-namespace broadcast, middleware refusal, unknown namespace", async (t) => {
  const { app, sockets } = await setup(t, { clients: 1 });
  const [root] = sockets;
  // More namespaces over the same manager (one Engine.IO connection).
  // (a socket made by manager.socket() connects by itself: autoConnect)
  const chat = root.io.socket("/chat");
  chat.inbox = inbox(chat);
  await connected(chat);
  const chatConnection = await app.waitFor("connection", { nsp: "/chat", id: chat.id });
  assert.equal(chatConnection.connId, root.io.engine.id);
  assert.deepEqual(chatConnection.claims.userId, ["c0"]);

  // per-namespace broadcast
  await app.command("emit", { target: { nsp: "/chat" }, event: "only-chat", args: ["c"] });
  await app.command("emit", { target: { nsp: "/" }, event: "only-root", args: ["r"] });
  await chat.inbox.waitFor("only-chat");
  await root.inbox.waitFor("only-root");
  assertReceived(root, "only-chat", []);
  assertReceived(chat, "only-root", []);
  // acks in a namespace
  assert.equal(await emitAck(chat, "echo", "in chat"), "in chat");
  // rooms are per namespace
  await emitAck(chat, "join", "lobby");
  await app.command("emit", { target: { nsp: "/", to: "lobby" }, event: "lobby", args: ["root-lobby"] });
  await app.command("emit", { target: { nsp: "/chat", to: "lobby" }, event: "lobby", args: ["chat-lobby"] });
  await barrier(app, [chat], { nsp: "/chat" });
  await barrier(app, [root], { nsp: "/" });
  assertReceived(chat, "lobby", [["chat-lobby"]]);
  assertReceived(root, "lobby", []);

  // middleware refusal
  const locked = root.io.socket("/locked");
  const lockedError = await connectError(locked);
  assert.equal(lockedError.message, "locked out");
  await app.waitFor("locked-middleware", {});
  assert.equal(app.seen("connection", { nsp: "/locked" }).length, 0);

  // unknown namespace
  const nope = root.io.socket("/nope");
  const nopeError = await connectError(nope);
  assert.equal(nopeError.message, "Invalid namespace");

  // a refused socket gets no namespace broadcast; the others still work
  await app.command("emit", { target: { nsp: "/locked" }, event: "locked-news", args: [] });
  await barrier(app, [root], { nsp: "/" });
  assert.deepEqual(eventsOn(root.io, "/locked", "locked-news"), []);
  assert.equal(await emitAck(root, "echo", "root ok"), "root ok");

  // leaving one namespace leaves the others; the namespace group goes too
  const chatId = chat.id;
  chat.disconnect();
  assert.equal((await app.waitFor("disconnect", { nsp: "/chat", id: chatId })).reason, "client namespace disconnect");
  await app.command("emit", { target: { nsp: "/chat" }, event: "chat-after-leave", args: [] });
  await barrier(app, [root], { nsp: "/" });
  assert.deepEqual(eventsOn(root.io, "/chat", "chat-after-leave"), []);
  assert.equal(await emitAck(root, "echo", "root still ok"), "root still ok");

  // a client can open "/chat" on its own connection straight away
  const direct = await connectClient(t, app, { nsp: "/chat", username: "d" });
  await connected(direct);
  assert.equal((await app.waitFor("connection", { nsp: "/chat", id: direct.id })).nsp, "/chat");
  assert.equal(app.seen("connection", { nsp: "/", id: direct.id }).length, 0);
});

test("a client's auth payload and query reach socket.handshake", async (t) => {
  const { app } = await setup(t);
  const s = await connectClient(t, app, { username: "q", auth: { secret: "s3" }, query: { room: "lobby" } });
  await connected(s);
  const c = await app.waitFor("connection", { id: s.id });
  assert.deepEqual(c.auth, { secret: "s3" });
  assert.equal(c.query.room, "lobby");
  assert.deepEqual(c.claims.userId, ["q"]);
});
