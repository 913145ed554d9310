// Drives the test application of crates/server/tests with the real
// socket.io-client (and engine.io-client) from tests/compat/node_modules.
//
// Environment: COMPAT_PACKAGE_JSON (tests/compat/package.json, to resolve the
// packages from), ENDPOINT, HUB_PATH, TOKENS (JSON: user -> token), SCENARIO.
// Prints one line `RESULT <json>` and exits 0, or exits non-zero on failure.
// Every wait has a deadline; nothing sleeps.

import { createRequire } from "node:module";

const require = createRequire(process.env.COMPAT_PACKAGE_JSON);
const { io } = require("socket.io-client");
const { Socket: EngineSocket } = require("engine.io-client");

const endpoint = process.env.ENDPOINT;
const path = process.env.HUB_PATH;
const tokens = JSON.parse(process.env.TOKENS);
const WAIT_MS = 10_000;

const watchdog = setTimeout(() => {
  console.error("scenario did not finish in time");
  process.exit(3);
}, 30_000);

function connect(ns, user, { forceNew = true, auth, query = {}, transports } = {}) {
  return io(endpoint + ns, {
    path,
    query: { access_token: tokens[user], ...query },
    auth,
    forceNew,
    reconnection: false,
    ...(transports ? { transports } : {}),
  });
}

function once(emitter, event, accept = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function listener(...args) {
      if (!accept(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    }
    emitter.on(event, listener);
  });
}

async function connected(socket) {
  const failed = once(socket, "connect_error").then(([err]) => {
    throw new Error(`connect_error: ${err.message}`);
  });
  await Promise.race([once(socket, "connect"), failed]);
  failed.catch(() => {});
  return socket;
}

async function connectError(socket) {
  const [err] = await once(socket, "connect_error");
  return err.message;
}

const ack = (socket, ...args) => socket.timeout(WAIT_MS).emitWithAck(...args);
// Every argument of the acknowledgement (emitWithAck resolves with the first).
const ackAll = (socket, ...args) =>
  new Promise((resolve, reject) =>
    socket.timeout(WAIT_MS).emit(...args, (err, ...res) => (err ? reject(err) : resolve(res))),
  );

const scenarios = {
  async namespaces() {
    const welcomes = {};
    const root = connect("/", "alice", { forceNew: false, auth: { hello: "root" }, query: { extra: "q1" } });
    const chat = connect("/chat", "alice", { forceNew: false, auth: { hello: "chat" }, query: { extra: "q1" } });
    const team = connect("/team-7", "alice");
    for (const [name, s] of Object.entries({ root, chat, team })) {
      s.on("welcome", (w) => (welcomes[name] = w));
    }
    await Promise.all([connected(root), connected(chat), connected(team)]);
    const whoRoot = await ack(root, "whoami");
    const whoChat = await ack(chat, "whoami");
    const whoTeam = await ack(team, "whoami");
    const invalid = await connectError(connect("/nope", "alice"));
    const refused = await connectError(connect("/private", "alice"));
    const admin = await connected(connect("/private", "root"));
    const member = await ack(admin, "member");
    return {
      clientIds: { root: root.id, chat: chat.id },
      whoRoot, whoChat, whoTeam, welcomes, invalid, refused, member,
    };
  },

  async acks() {
    const s = await connected(connect("/", "alice", { transports: ["websocket"] }));
    s.on("answered", (q, n, cb) => cb({ got: [q, n] }));
    s.on("silent", () => {});
    const sum = await ack(s, "add", 1, 2);
    let clientTimeout = null;
    try {
      await s.timeout(300).emitWithAck("never");
    } catch (e) {
      clientTimeout = e.message;
    }
    const echoed = await ack(s, "echo", "a", 1, { x: true });
    const answered = await ack(s, "ask", "answered");
    const silent = await ack(s, "ask", "silent");
    return { sum, clientTimeout, echoed, answered, silent };
  },

  async binary() {
    const s = await connected(connect("/chat", "alice"));
    const download = once(s, "download");
    s.on("binary-question", (q, buf, cb) => cb(`got ${q} ${buf.length}`, Buffer.from([5, 6])));
    const [data, count, reversed] = await ackAll(s, "upload", "file.bin", Buffer.from([1, 2, 3]));
    const [downloaded] = await download;
    const answer = await ack(s, "ask-binary");
    return {
      data, count,
      reversed: [...reversed],
      downloaded: [...downloaded],
      answer,
    };
  },

  async rooms() {
    const names = ["a", "b", "c"];
    const users = { a: "alice", b: "bob", c: "carol" };
    const sockets = {};
    const received = { a: [], b: [], c: [] };
    for (const n of names) {
      const s = connect("/", users[n]);
      for (const ev of ["m1", "m2", "m3", "m4", "m5"]) {
        s.on(ev, (from) => received[n].push([ev, from]));
      }
      sockets[n] = s;
    }
    await Promise.all(names.map((n) => connected(sockets[n])));
    const { a, b, c } = sockets;
    const barrier = async (tag) => {
      const all = names.map((n) => once(sockets[n], "sync", (t) => t === tag));
      await ack(a, "sync-all", tag);
      await Promise.all(all);
    };
    const rooms = {
      a: await ack(a, "join", ["r1"]),
      b: await ack(b, "join", ["r1", "r2"]),
    };
    await ack(a, "to", { rooms: ["r1"], event: "m1" });
    await barrier("s1");
    await ack(c, "io-to", { rooms: ["r1"], except: ["r2"], event: "m2" });
    await barrier("s2");
    await ack(b, "broadcast", "m3");
    await barrier("s3");
    const bAfterLeave = await ack(b, "leave", ["r1"]);
    await ack(a, "io-to", { rooms: ["r1"], event: "m4" });
    await barrier("s4");
    await ack(c, "io-to", { rooms: ["r1", "r2"], event: "m5" });
    await barrier("s5");
    a.on("vote", (q, cb) => cb(`a:${q}`));
    b.on("vote", (q, cb) => cb("b"));
    c.on("vote", () => {});
    const poll = await ack(c, "poll");
    const ids = Object.fromEntries(names.map((n) => [n, sockets[n].id]));
    return { ids, rooms, bAfterLeave, received, poll };
  },

  async disconnects() {
    const kicked = await connected(connect("/", "alice"));
    const chat1 = await connected(connect("/chat", "alice"));
    const chat2 = await connected(connect("/chat", "bob"));
    const leaver = await connected(connect("/", "carol"));
    const operator = await connected(connect("/", "dave"));
    // WebSocket only, so its end is seen at once (a polling client that
    // vanishes is only noticed at the next missed ping).
    const closer = await connected(connect("/", "erin", { transports: ["websocket"] }));
    const ids = { kicked: kicked.id, chat1: chat1.id, chat2: chat2.id, leaver: leaver.id, closer: closer.id };

    const kickedReason = once(kicked, "disconnect");
    kicked.emit("kick-me");
    const [kickedWhy] = await kickedReason;

    const leaverReason = once(leaver, "disconnect");
    leaver.disconnect();
    const [leaverWhy] = await leaverReason;

    const chatReasons = Promise.all([once(chat1, "disconnect"), once(chat2, "disconnect")]);
    await ack(operator, "kick-ns", "/chat");
    const [[chat1Why], [chat2Why]] = await chatReasons;

    // The whole connection goes away without a Socket.IO DISCONNECT.
    closer.io.engine.close();
    return { ids, kickedWhy, leaverWhy, chat1Why, chat2Why, operatorConnected: operator.connected };
  },

  async "no-connect"() {
    const started = Date.now();
    const socket = new EngineSocket(endpoint, {
      path: path + "/",
      query: { access_token: tokens.alice },
      transports: ["websocket"],
    });
    await once(socket, "open");
    const opened = Date.now() - started;
    const [reason] = await once(socket, "close");
    return { opened, closedAfterMs: Date.now() - started, reason };
  },
};

const scenario = scenarios[process.env.SCENARIO];
if (!scenario) {
  console.error(`unknown scenario ${process.env.SCENARIO}`);
  process.exit(2);
}
try {
  const result = await scenario();
  console.log(`RESULT ${JSON.stringify(result)}`);
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}
