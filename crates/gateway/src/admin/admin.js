// The operator's page: polls /admin/api/stats every second, shows the
// figures per hub, and draws the last two minutes on a canvas. No library.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120;
const history = [];
let previous = null;

function text(tag, content) {
  const el = document.createElement(tag);
  el.textContent = content;
  return el;
}

function rate(now, before, field, seconds) {
  if (!before || seconds <= 0) return 0;
  return Math.max(0, (now[field] - before[field]) / seconds);
}

function totals(stats) {
  let received = 0, sent = 0;
  for (const hub of stats.hubs) { received += hub.messages_received; sent += hub.messages_sent; }
  return { received, sent };
}

function describe(map) {
  const parts = Object.entries(map).map(([reason, n]) => `${reason}: ${n}`);
  return parts.length ? parts.join(", ") : "none";
}

function render(stats, at) {
  const seconds = previous ? (at - previous.at) / 1000 : 0;
  const before = previous ? new Map(previous.stats.hubs.map((h) => [h.name, h])) : new Map();
  const sums = totals(stats);
  const rateIn = previous ? rate(sums, previous.sums, "received", seconds) : 0;
  const rateOut = previous ? rate(sums, previous.sums, "sent", seconds) : 0;
  document.getElementById("total-connections").textContent = stats.connections;
  document.getElementById("rate-in").textContent = rateIn.toFixed(1);
  document.getElementById("rate-out").textContent = rateOut.toFixed(1);
  document.getElementById("hub-count").textContent = stats.hubs.length;

  const body = document.querySelector("#hubs tbody");
  body.replaceChildren();
  for (const hub of stats.hubs) {
    const row = document.createElement("tr");
    row.dataset.hub = hub.name;
    const old = before.get(hub.name);
    const servers = hub.echo
      ? "built-in echo"
      : hub.servers.map((s) => `${s.id} (${s.tunnels} tunnel${s.tunnels === 1 ? "" : "s"})`).join(", ") || "none";
    row.append(
      text("td", hub.name),
      text("td", hub.connections.total),
      text("td", `${hub.connections.polling} / ${hub.connections.websocket}`),
      text("td", rate(hub, old, "messages_received", seconds).toFixed(1)),
      text("td", rate(hub, old, "messages_sent", seconds).toFixed(1)),
      text("td", hub.handshakes_accepted),
      text("td", describe(hub.refusals)),
      text("td", servers),
    );
    row.children[1].className = "connections";
    body.append(row);
  }
  const unknown = describe(stats.unknown_hub_refusals);
  document.getElementById("unknown").textContent =
    unknown === "none" ? "" : `Refused for hubs without an application: ${unknown}`;

  history.push({ connections: stats.connections, rateIn, rateOut });
  while (history.length > HISTORY) history.shift();
  draw();
  previous = { stats, sums, at };
}

function draw() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = 28;
  ctx.clearRect(0, 0, width, height);
  ctx.setLineDash([]);
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#e3e6ec";
  ctx.fillStyle = "#5a6275";
  ctx.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + ((height - pad) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(width - 4, y); ctx.stroke();
  }
  const series = [
    ["connections", "#2f6fde"],
    ["rateIn", "#1a9e5c"],
    ["rateOut", "#d9822b"],
  ];
  const max = Math.max(1, ...history.flatMap((p) => [p.connections, p.rateIn, p.rateOut]));
  ctx.fillText(String(Math.ceil(max)), 2, pad / 2 + 4);
  ctx.fillText("0", 2, height - pad / 2 + 4);
  const x = (i) => pad + ((width - pad - 4) * i) / (HISTORY - 1);
  const y = (v) => height - pad / 2 - ((height - pad) * v) / max;
  for (const [field, colour] of series) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    // Dashed, so "out" does not hide "in" when they are equal (echo).
    ctx.setLineDash(field === "rateOut" ? [6, 4] : []);
    ctx.beginPath();
    const offset = HISTORY - history.length;
    history.forEach((p, i) => {
      if (i === 0) ctx.moveTo(x(offset + i), y(p[field]));
      else ctx.lineTo(x(offset + i), y(p[field]));
    });
    ctx.stroke();
  }
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/admin/api/stats", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      // The session expired or was replaced: show the login form.
      window.location.reload();
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json(), Date.now());
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    status.className = "";
  } catch (error) {
    status.textContent = `stale: ${error.message}`;
    status.className = "stale";
  }
  setTimeout(poll, POLL_MS);
}

poll();
