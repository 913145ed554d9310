// The browser code of the SDK's examples, run with the real socket.io-client
// from tests/compat/node_modules: take a /negotiate answer, connect with
//   io(endpoint, { path, query: { access_token: token } })
// and ask the application "whoami" (with an acknowledgement).
//
// Environment: COMPAT_PACKAGE_JSON (tests/compat/package.json), and either
// NEGOTIATE_URL (fetched, as a browser does) or NEGOTIATE_JSON (an answer
// already fetched, e.g. with a login cookie). Optional NAMESPACE ("/").
// Prints one line `RESULT <json>`: {"negotiate": <answer>, "whoami": <ack>}
// when connected, {"connectError": <message>} when refused. Exits non-zero
// on any other failure. Every wait has a deadline.

import { createRequire } from "node:module";

const require = createRequire(process.env.COMPAT_PACKAGE_JSON);
const { io } = require("socket.io-client");

const WAIT_MS = 10_000;
const watchdog = setTimeout(() => {
  console.error("negotiate_client did not finish in time");
  process.exit(3);
}, 20_000);

async function negotiate() {
  if (process.env.NEGOTIATE_JSON) return JSON.parse(process.env.NEGOTIATE_JSON);
  const res = await fetch(process.env.NEGOTIATE_URL);
  if (!res.ok) throw new Error(`negotiate answered ${res.status}: ${await res.text()}`);
  return res.json();
}

const json = await negotiate();
const ns = process.env.NAMESPACE ?? "/";
// Exactly the SDK's browser code (plus no reconnection, for the test).
const socket = io(json.endpoint + (ns === "/" ? "" : ns), {
  path: json.path,
  query: { access_token: json.token },
  reconnection: false,
});

const result = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("neither connect nor connect_error")), WAIT_MS);
  socket.on("connect", async () => {
    try {
      const whoami = await socket.timeout(WAIT_MS).emitWithAck("whoami");
      clearTimeout(timer);
      resolve({ negotiate: json, connected: true, whoami });
    } catch (e) {
      reject(e);
    }
  });
  socket.on("connect_error", (err) => {
    clearTimeout(timer);
    resolve({ negotiate: json, connected: false, connectError: err.message, data: err.data ?? null });
  });
});

socket.disconnect();
console.log("RESULT " + JSON.stringify(result));
clearTimeout(watchdog);
process.exit(0);
