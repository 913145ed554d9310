// The chat page. The only Portcullis-specific part is how it connects:
// fetch /negotiate (the session cookie proves who we are), then
//   io(endpoint, { path, query: { access_token: token } })
// exactly as with the official SDK, plus portcullis-client's
// keepTokenFresh, which hands the gateway a fresh token over the live
// connection before the current one expires (tokens live a minute) and puts
// a fresh one in place whenever the connection drops. Everything shown
// about other users (names, presence, typing) comes from the server, which
// takes it from the verified login, never from what a client claims.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  current: "general",
  rooms: new Map(), // room -> { messages: [], unread: 0 }
  online: [],
  typing: new Map(), // room -> Map(userId -> name)
  signedOut: false,
  refreshes: 0, // tokens handed to the gateway over the live connection
  expiresAt: null, // the connection's deadline as the gateway last said
  disconnects: [], // { reason, at } of every disconnection, for the curious
};
let socket = null;
let keeper = null;
let retry = 0;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

function setStatus(stateName, text) {
  const s = $("status");
  s.dataset.state = stateName;
  s.textContent = text;
}

function showBanner(text, link) {
  const b = $("banner");
  b.replaceChildren(text, ...(link ? [" ", el("a", { href: link.href, textContent: link.text })] : []));
  b.hidden = false;
}

function room(name) {
  if (!state.rooms.has(name)) state.rooms.set(name, { messages: [], unread: 0 });
  return state.rooms.get(name);
}

// ----- rendering -----

function renderRooms() {
  const items = [...state.rooms.keys()].sort().map((name) => {
    const r = state.rooms.get(name);
    const li = el("li", { className: name === state.current ? "active" : "", dataset: { room: name } },
      el("button", { type: "button", className: "link", textContent: "#" + name, onclick: () => switchRoom(name) }));
    if (r.unread) li.append(el("span", { className: "badge", textContent: String(r.unread) }));
    if (name !== "general") {
      li.append(el("button", { type: "button", className: "leave", title: "Leave #" + name, textContent: "×",
        dataset: { testid: "leave-" + name }, onclick: () => leaveRoom(name) }));
    }
    return li;
  });
  $("rooms").replaceChildren(...items);
}

function renderOnline() {
  $("online").replaceChildren(...state.online.map((p) =>
    el("li", { dataset: { user: p.id }, className: state.me && p.id === state.me.id ? "self" : "" },
      el("span", { className: "dot" }), p.name + (state.me && p.id === state.me.id ? " (you)" : ""))));
}

function renderMessages() {
  const list = $("messages");
  const r = room(state.current);
  list.replaceChildren(...r.messages.map((m) => m.notice
    ? el("li", { className: "notice", textContent: m.text })
    : el("li", { className: "message" + (state.me && m.from.id === state.me.id ? " mine" : ""), dataset: { from: m.from.id } },
        el("span", { className: "from", textContent: m.from.name }),
        el("time", { textContent: new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }),
        el("p", { className: "text", textContent: m.text }))));
  list.scrollTop = list.scrollHeight;
  $("room-title").textContent = "#" + state.current;
}

function renderTyping() {
  const names = [...(state.typing.get(state.current)?.values() ?? [])];
  $("typing").textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…`
    : `${names.join(", ")} are typing…`;
}

function render() {
  renderRooms();
  renderMessages();
  renderTyping();
}

function switchRoom(name) {
  stopTyping();
  state.current = name;
  room(name).unread = 0;
  render();
  $("text").focus();
}

// ----- connection -----

async function negotiate() {
  const res = await fetch("/negotiate", { credentials: "same-origin" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(body.message || res.statusText);
    error.status = res.status;
    throw error;
  }
  return body; // { endpoint, path, token }
}

function signedOut(error) {
  if (state.signedOut) return;
  state.signedOut = true;
  keeper?.stop();
  if (socket) socket.disconnect();
  setStatus("signed-out", "signed out");
  showBanner(`You are signed out: the server refused a new token (${error.status} ${error.message}).`,
    { href: "/login", text: "Log in again" });
  for (const form of document.querySelectorAll("form")) form.inert = true;
  state.online = [];
  state.typing.clear();
  renderOnline();
  renderTyping();
  document.querySelector("header .me").textContent = "Signed out";
  $("logout").hidden = true;
}

async function connect() {
  if (state.signedOut) return;
  let answer;
  try {
    answer = await negotiate();
  } catch (error) {
    if (error.status === 401) return signedOut(error);
    return scheduleReconnect();
  }
  if (!socket) {
    // socket.io reconnects by itself after a dropped connection (say the
    // gateway closed it at its token's expiry); keepTokenFresh has a
    // fresh token in the query by the time it does.
    socket = io(answer.endpoint, { path: answer.path, query: { access_token: answer.token } });
    bind(socket);
    keeper = PortcullisClient.keepTokenFresh(socket, {
      negotiate,
      onRefresh: ({ expiresAt }) => {
        state.refreshes++;
        state.expiresAt = expiresAt;
      },
      // Logged out (in another tab, say): /negotiate refuses us.
      onError: (error, { phase }) => {
        if (phase === "negotiate" && error.status === 401) signedOut(error);
      },
    });
  } else {
    socket.io.opts.query = { ...socket.io.opts.query, access_token: answer.token };
    socket.connect();
  }
}

function scheduleReconnect() {
  if (state.signedOut) return;
  const delay = Math.min(10_000, 500 * 2 ** retry++);
  setStatus("reconnecting", "reconnecting…");
  setTimeout(connect, delay);
}

function bind(s) {
  s.on("connect", () => {
    retry = 0;
    setStatus("connected", "connected");
    $("banner").hidden = true;
    // Back in every room we were in before a reconnection.
    for (const name of state.rooms.keys()) if (name !== "general") s.emit("join", name, () => {});
  });
  s.on("connect_error", (err) => {
    // Refused by the app's connect middleware (say the user was deleted).
    if (err.message.startsWith("unauthorized")) return signedOut({ status: 401, message: err.message });
    setStatus("disconnected", "disconnected");
    showBanner(`Could not connect: ${err.message}`);
    // socket.io retries a failed connection by itself, not a refused one.
    if (!s.active) scheduleReconnect();
  });
  s.on("disconnect", (reason) => {
    state.disconnects.push({ reason, at: Date.now() });
    state.typing.clear();
    renderTyping();
    if (reason === "io client disconnect") return setStatus("disconnected", "disconnected");
    if (reason === "io server disconnect") {
      // The gateway ended the session: our tokens were revoked (a logout,
      // perhaps in another tab). socket.io does not reconnect after this;
      // ask /negotiate whether we are still signed in.
      setStatus("disconnected", "disconnected");
      return connect();
    }
    setStatus("reconnecting", "reconnecting…");
  });
  s.on("welcome", ({ me, rooms }) => {
    state.me = me;
    for (const name of rooms) room(name);
    render();
    renderOnline();
  });
  s.on("presence", (people) => {
    state.online = people;
    renderOnline();
  });
  s.on("message", (m) => {
    const r = room(m.room);
    r.messages.push(m);
    if (m.room !== state.current) r.unread++;
    const typers = state.typing.get(m.room);
    if (typers) typers.delete(m.from.id);
    render();
  });
  s.on("notice", ({ room: name, text }) => {
    if (!state.rooms.has(name)) return;
    room(name).messages.push({ notice: true, text });
    if (name === state.current) renderMessages();
  });
  s.on("typing", ({ room: name, user, typing }) => {
    if (!state.typing.has(name)) state.typing.set(name, new Map());
    if (typing) state.typing.get(name).set(user.id, user.name);
    else state.typing.get(name).delete(user.id);
    renderTyping();
  });
}

// ----- actions -----

let typingTimer = null;
function startTyping() {
  if (!socket?.connected) return;
  if (!typingTimer) socket.emit("typing", { room: state.current, typing: true });
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 2500);
}
function stopTyping() {
  if (!typingTimer) return;
  clearTimeout(typingTimer);
  typingTimer = null;
  socket?.emit("typing", { room: state.current, typing: false });
}

async function leaveRoom(name) {
  const res = await socket.timeout(5000).emitWithAck("leave", name).catch((e) => ({ ok: false, error: e.message }));
  if (!res.ok) return showBanner(res.error);
  state.rooms.delete(name);
  state.typing.delete(name);
  if (state.current === name) state.current = "general";
  render();
}

$("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("join-name");
  if (!input.value.trim() || !socket?.connected) return;
  const res = await socket.timeout(5000).emitWithAck("join", input.value).catch((e) => ({ ok: false, error: e.message }));
  if (!res.ok) return showBanner(res.error);
  input.value = "";
  room(res.room);
  switchRoom(res.room);
});

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text || !socket?.connected) return;
  stopTyping();
  input.value = "";
  const res = await socket.timeout(5000).emitWithAck("message", { room: state.current, text })
    .catch((e) => ({ ok: false, error: e.message }));
  if (!res.ok) {
    input.value = text;
    showBanner(`Not sent: ${res.error}`);
  }
});

$("text").addEventListener("input", () => ($("text").value ? startTyping() : stopTyping()));

$("logout").addEventListener("click", async () => {
  // The server ends the session and revokes our tokens: the gateway
  // disconnects this tab and every other tab of ours at once, and the
  // attempt to get a new token shows that the server now refuses us.
  await fetch("/logout", { method: "POST", credentials: "same-origin" });
  keeper?.stop();
  socket?.disconnect();
  try {
    await negotiate();
  } catch (error) {
    return signedOut(error);
  }
});

// For tests and the curious: the socket's state.
window.chat = {
  get connected() { return Boolean(socket?.connected); },
  get id() { return socket?.id ?? null; },
  get me() { return state.me; },
  get refreshes() { return state.refreshes; },
  get expiresAt() { return state.expiresAt; },
  get disconnects() { return state.disconnects; },
  get transport() { return socket?.io.engine?.transport?.name ?? null; },
};

room("general");
render();
connect();
