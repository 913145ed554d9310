// Benchmark peer: the bench app written for the official server SDK
// `@azure/web-pubsub-socket.io`, attached to a Portcullis gateway over the
// server tunnel. Clients connect to the gateway, which checks their JWT.
//
// Env: PORTCULLIS_CONNECTION_STRING (required; the first line `portcullis
// serve` prints), HUB (default "bench"). Prints "READY" once attached.
//
// socket.io is pinned to 4.7.5, the copy the SDK 1.2.1 depends on, so a
// single copy is installed (see examples/node-chat/README.md).
//
// The app: `echo` acks its arguments; `join` joins a room (acks the rooms);
// `emit-room` (room, data) emits `fanout` with data to the room (acks true).

const http = require("http");
const { Server } = require("socket.io");
const { useAzureSocketIO } = require("@azure/web-pubsub-socket.io");

const connectionString = process.env.PORTCULLIS_CONNECTION_STRING;
if (!connectionString) {
  console.error("PORTCULLIS_CONNECTION_STRING is required");
  process.exit(2);
}
const hub = process.env.HUB || "bench";

async function main() {
  // As the SDK's examples do: socket.io on an HTTP server (which serves
  // nothing here: clients connect to the gateway).
  const server = http.createServer();
  const io = new Server(server);
  await useAzureSocketIO(io, { hub, connectionString });
  io.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
    socket.on("join", async (room, ack) => {
      await socket.join(room);
      if (typeof ack === "function") ack([...socket.rooms]);
    });
    socket.on("emit-room", (room, data, ack) => {
      io.to(room).emit("fanout", data);
      if (typeof ack === "function") ack(true);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  console.log("READY");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
