// The socket.io-protocol suite's reference server (its README), written on the
// official SDK: the gateway serves the clients, this app the namespaces.
const { createRequire } = require("node:module");
const { createServer } = require("node:http");

const sdkEntry = require.resolve("@azure/web-pubsub-socket.io");
const { useAzureSocketIO } = require(sdkEntry);
// The socket.io copy the SDK bundles, unless SIO=app asks for the test package's.
const socketIo = process.env.SIO === "app" ? require.resolve("socket.io") : createRequire(sdkEntry).resolve("socket.io");
const { Server } = require(socketIo);

const io = new Server(createServer(), {
  pingInterval: 300,
  pingTimeout: 200,
  maxPayload: 1000000,
  connectTimeout: 1000,
  cors: { origin: "*" },
});
io.of("/").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
});
io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));

useAzureSocketIO(io, { hub: "sio", connectionString: process.env.PORTCULLIS_CONNECTION_STRING }).then(() => console.log("ready"));
