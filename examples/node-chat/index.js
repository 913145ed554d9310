// A Socket.IO chat written for the official server SDK
// `@azure/web-pubsub-socket.io` (its chat-with-negotiate example, trimmed):
// nothing here knows about Portcullis except the connection string.
//
//   PORTCULLIS_CONNECTION_STRING="Endpoint=http://127.0.0.1;Port=8080;AccessKey=KEY;Version=1.0;" node index.js
//
// then open http://localhost:3000 in two browser tabs.

const http = require("http");
const path = require("path");
const express = require("express");
const { Server } = require("socket.io");
const { useAzureSocketIO, negotiate } = require("@azure/web-pubsub-socket.io");

const connectionString =
  process.env.PORTCULLIS_CONNECTION_STRING || process.env.WebPubSubConnectionString || process.argv[2];
if (!connectionString) {
  console.error("Set PORTCULLIS_CONNECTION_STRING (the first line `portcullis serve` prints).");
  process.exit(2);
}
const hub = process.env.HUB || "chat";
const port = Number(process.env.PORT || 3000);

const app = express();
const server = http.createServer(app);
const io = new Server(server);

// The browser bundle of socket.io-client, from node_modules. (Not under
// /socket.io…: the SDK answers 403 on the Socket.IO server's own path.)
app.get("/vendor/socket.io.js", (req, res) => res.sendFile(require.resolve("socket.io-client/dist/socket.io.js")));
app.use(express.static(path.join(__dirname, "public")));

async function main() {
  await useAzureSocketIO(io, { hub, connectionString });

  // The browser asks for {endpoint, path, token}, then connects to the gateway.
  app.get(
    "/negotiate",
    negotiate(io, (req) => {
      const url = new URL(req.url, "http://localhost");
      const username = url.searchParams.get("username") || "anonymous";
      // Authenticate the user here (session, password, ...); throw to refuse.
      return { userId: username, expirationTimeInMinutes: Number(url.searchParams.get("expirationMinutes") || 60) };
    }),
  );

  let numUsers = 0;
  io.on("connection", (socket) => {
    let username = null;

    socket.on("add user", (name, ack) => {
      if (username) return;
      username = String(name).slice(0, 40);
      numUsers++;
      socket.emit("login", { numUsers });
      socket.broadcast.emit("user joined", { username, numUsers });
      if (typeof ack === "function") ack({ numUsers });
    });

    socket.on("new message", (message) => {
      if (!username) return;
      socket.broadcast.emit("new message", { username, message: String(message).slice(0, 1000) });
    });

    socket.on("disconnect", () => {
      if (!username) return;
      numUsers--;
      socket.broadcast.emit("user left", { username, numUsers });
    });
  });

  server.listen(port, () => {
    console.log(`chat on http://localhost:${server.address().port} (hub "${hub}")`);
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
