// Benchmark peer: Node socket.io 4.8 serving the bench app on
// /clients/socketio/hubs/<hub>/, with the same auth rule as Portcullis: an
// HS256 JWT signed with the access key, in ?access_token=, whose audience is
// a URL with path /clients/socketio/hubs/<hub>.
//
//   AUTH=use    (default) the JWT is checked in namespace middleware `io.use`,
//               what socket.io's docs recommend: the Engine.IO session exists
//               before the check, a bad token is refused at CONNECT (44).
//   AUTH=allow  the JWT is checked in engine.io's `allowRequest`, its only
//               pre-session hook: a bad token gets 403 and no session.
//
// Env: ACCESS_KEY (required), HUB (default "bench"), PORT (default 0),
// HOST (default 127.0.0.1). Prints "LISTENING <port>" once listening.
//
// Cluster mode (the cluster-fanout benchmark): with REDIS_URL set (e.g.
// redis://127.0.0.1:6379), the server uses @socket.io/redis-adapter over two
// node-redis clients (publish, subscribe), its channels named with
// REDIS_PREFIX (default "portcullis-bench-node"), so several processes share
// rooms. It prints LISTENING only once both clients are connected and the
// adapter is installed.
//
// The app: `echo` acks its arguments; `join` joins a room (acks the rooms);
// `emit-room` (room, data) emits `fanout` with data to the room (acks true).

const crypto = require("crypto");
const http = require("http");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");

const KEY = process.env.ACCESS_KEY;
if (!KEY) {
  console.error("ACCESS_KEY is required");
  process.exit(2);
}
const HUB = process.env.HUB || "bench";
const AUTH = process.env.AUTH || "use";
const PATH = `/clients/socketio/hubs/${HUB}/`;
// A KeyObject, not the string: given a string, jsonwebtoken 9 first tries
// (and fails) to parse it as a PEM public key on every call, which costs
// ~0.8 ms per verification here (~30 µs with the KeyObject).
const SECRET = crypto.createSecretKey(Buffer.from(KEY, "utf8"));
const AUDIENCE = new RegExp(`/clients/socketio/hubs/${HUB.replace(/[^A-Za-z0-9_-]/g, "\\$&")}/?$`, "i");

function verify(token) {
  if (typeof token !== "string" || token.length === 0 || token.length > 8192) return false;
  try {
    const claims = jwt.verify(token, SECRET, { algorithms: ["HS256"], clockTolerance: 30 });
    if (typeof claims.exp !== "number") return false;
    return typeof claims.aud === "string" && AUDIENCE.test(new URL(claims.aud).pathname);
  } catch {
    return false;
  }
}

const options = { path: PATH, serveClient: false };
if (AUTH === "allow") {
  options.allowRequest = (req, callback) => {
    const token = new URL(req.url, "http://x").searchParams.get("access_token");
    callback(null, verify(token));
  };
}

const server = http.createServer();
const io = new Server(server, options);

async function useRedisAdapter(url) {
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("redis");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on("error", (e) => console.error(`redis: ${e.message}`));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, { key: process.env.REDIS_PREFIX || "portcullis-bench-node" }));
}

if (AUTH === "use") {
  io.use((socket, next) => {
    if (verify(socket.handshake.query.access_token)) next();
    else next(new Error("unauthorized"));
  });
}

io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(...args);
  });
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack([...socket.rooms]);
  });
  socket.on("emit-room", (room, data, ack) => {
    io.to(room).emit("fanout", data);
    if (typeof ack === "function") ack(true);
  });
});

function listen() {
  server.listen(Number(process.env.PORT || 0), process.env.HOST || "127.0.0.1", () => {
    console.log(`LISTENING ${server.address().port}`);
  });
}

if (process.env.REDIS_URL) {
  useRedisAdapter(process.env.REDIS_URL).then(listen, (e) => {
    console.error(`redis adapter: ${e.message}`);
    process.exit(1);
  });
} else {
  listen();
}

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
