// The dashboard's page: plain HTML, CSS and script in one string, with no build step and nothing loaded
// from elsewhere. It polls /dashboard/state every 2 s and draws every shard, its members and their
// sparklines. Rows carry data-* attributes (state, role, epoch, lease) that the browser test reads.

export const dashboardPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvshard dashboard</title>
<style>
  :root { --bg: #f6f7f9; --card: #fff; --ink: #1d232b; --dim: #6a7480; --line: #e3e6ea;
          --up: #1f8a4c; --down: #c62828; --lag: #b7791f; --accent: #2f6fdf; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--ink); }
  header { display: flex; align-items: baseline; gap: 1rem; padding: 14px 20px; background: #1d232b; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header .meta { color: #aeb6c0; font-size: 13px; }
  #banner { display: none; margin: 12px 20px 0; padding: 10px 14px; border-radius: 6px; background: #fdecea; color: var(--down); }
  #banner.on { display: block; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(700px, 1fr)); gap: 16px; padding: 16px 20px; }
  .shard { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; overflow-x: auto; }
  .shard h2 { margin: 0 0 2px; font-size: 16px; }
  .shard .sub { color: var(--dim); font-size: 13px; margin-bottom: 8px; }
  .shard.degraded { border-color: var(--down); box-shadow: 0 0 0 1px var(--down) inset; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th { text-align: left; color: var(--dim); font-weight: 500; font-size: 12px; padding: 4px 6px; border-bottom: 1px solid var(--line); }
  td { padding: 6px; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
  tr:last-child td { border-bottom: 0; }
  tr.down td { background: #fdecea; }
  tr.lagging td { background: #fff6e5; }
  .pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .pill.up { background: #e3f4ea; color: var(--up); }
  .pill.down { background: var(--down); color: #fff; }
  .pill.lag { background: #fdf0d5; color: var(--lag); }
  .role-primary { color: var(--accent); font-weight: 600; }
  .self::after { content: " (this node)"; color: var(--dim); font-size: 12px; }
  .err { color: var(--down); font-size: 12px; white-space: normal; }
  svg.spark { width: 90px; height: 22px; display: block; }
  svg.spark polyline { fill: none; stroke-width: 1.5; }
  .spark-cell { color: var(--dim); font-size: 11px; }
  .progress { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; margin-top: 6px; }
  .progress > div { height: 100%; background: var(--accent); }
  .migration { font-size: 12px; color: var(--dim); margin-top: 8px; }
</style>
</head>
<body>
<header><h1>kvshard</h1><span class="meta" id="meta">loading…</span></header>
<div id="banner"></div>
<main id="shards"></main>
<script>
"use strict";
const refreshMs = 2000;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (n) => (n === null || n === undefined ? "–" : typeof n === "number" ? n.toLocaleString("en-US", { maximumFractionDigits: 2 }) : esc(n));

function spark(points, field, color) {
  const values = points.map((p) => p[field]).filter((v) => v !== null);
  if (values.length < 2) return '<svg class="spark"></svg>';
  const max = Math.max(...values, 1e-9);
  const step = 90 / Math.max(points.length - 1, 1);
  const coords = points
    .map((p, i) => (p[field] === null ? null : (i * step).toFixed(1) + "," + (21 - (p[field] / max) * 19).toFixed(1)))
    .filter(Boolean)
    .join(" ");
  return '<svg class="spark" viewBox="0 0 90 22" preserveAspectRatio="none"><polyline stroke="' + color + '" points="' + coords + '"/></svg>';
}

function lagging(m) {
  return m.up && m.role === "replica" && (m.in_sync === false || (m.lag_seconds !== null && m.lag_seconds > 1));
}

function memberRow(m) {
  const last = m.history.length ? m.history[m.history.length - 1] : null;
  const state = !m.up ? "down" : lagging(m) ? "lagging" : "up";
  const pill = state === "down" ? '<span class="pill down">DOWN</span>' : state === "lagging" ? '<span class="pill lag">LAGGING</span>' : '<span class="pill up">UP</span>';
  const lag = m.lag_entries === null || m.lag_entries === undefined ? "–" : fmt(m.lag_entries) + (m.lag_seconds ? " / " + fmt(m.lag_seconds) + " s" : "");
  const c = m.up ? m.coordinator : null;
  const lease = !c ? "" : c.holds_key ? (c.lease_remaining_ms / 1000).toFixed(1) + " s" : c.waiting ? "waiting: " + c.waiting : "no key";
  const leaseAttr = c && c.holds_key ? ' data-lease-ms="' + c.lease_remaining_ms + '"' : "";
  return (
    '<tr class="' + state + '" data-address="' + esc(m.address) + '" data-member="' + m.member + '" data-state="' + (m.up ? "up" : "down") +
    '" data-role="' + esc(m.role || "") + '"' + leaseAttr + ">" +
    "<td>" + m.member + "</td>" +
    '<td class="' + (m.self ? "self" : "") + '">' + esc(m.address) + "</td>" +
    '<td class="role-' + esc(m.role || "none") + '">' + (m.role ? esc(m.role) : "–") + "</td>" +
    "<td>" + pill + (m.up ? "" : '<div class="err">' + esc(m.error || "") + "</div>") + "</td>" +
    "<td>" + fmt(m.keys) + "</td>" +
    "<td>" + fmt(m.last_seq) + "</td>" +
    "<td>" + fmt(m.applied_seq) + "</td>" +
    "<td>" + lag + "</td>" +
    (leaseColumn ? '<td class="lease">' + esc(lease) + "</td>" : "") +
    '<td class="spark-cell">' + spark(m.history, "rps", "#2f6fdf") + (last ? fmt(Math.round(last.rps)) + " req/s" : "") + "</td>" +
    '<td class="spark-cell">' + spark(m.history, "ms", "#8e44ad") + (last && last.ms !== null ? fmt(last.ms) + " ms" : "") + "</td>" +
    "</tr>"
  );
}

function migrationOf(shard) {
  const m = shard.members.map((x) => x.migration).find((x) => x && x.state === "migrating");
  if (!m) return "";
  const total = (m.slots_to_send || 0) + (m.slots_to_receive || 0);
  const done = (m.slots_sent || 0) + (m.slots_received || 0);
  const pct = total ? Math.round((done / total) * 100) : 100;
  return '<div class="migration" data-migration="' + pct + '">migrating: ' + fmt(m.slots_sent) + " of " + fmt(m.slots_to_send) + " slots sent, " +
    fmt(m.slots_received) + " of " + fmt(m.slots_to_receive) + ' received<div class="progress"><div style="width:' + pct + '%"></div></div></div>';
}

/** Whether any member reports a lease: then the cluster has a coordinator, and the tables show a lease column. */
let leaseColumn = false;

function since(s) {
  if (!s.epoch_at) return "";
  return " · since <b>" + esc(new Date(s.epoch_at).toLocaleTimeString()) + "</b> (" + esc(String(s.epoch_kind || "").replace(/_/g, " ")) + ")";
}

function render(state) {
  leaseColumn = state.shards.some((s) => s.members.some((m) => m.up && m.coordinator));
  const html = state.shards.map((s) => {
    const degraded = s.members.some((m) => !m.up || lagging(m));
    return (
      '<section class="shard' + (degraded ? " degraded" : "") + '" data-shard="' + esc(s.name) + '" data-epoch="' + (s.epoch ?? "") + '">' +
      "<h2>" + esc(s.name) + "</h2>" +
      '<div class="sub">epoch <b class="epoch">' + fmt(s.epoch) + "</b> · primary <b>" + (s.primary ? esc(s.primary) : "unknown") + "</b>" + since(s) + " · idx " + s.idx + "</div>" +
      "<table><thead><tr><th>member</th><th>address</th><th>role</th><th>state</th><th>keys</th><th>last seq</th><th>applied</th><th>lag</th>" +
      (leaseColumn ? "<th>lease</th>" : "") + "<th>requests</th><th>latency</th></tr></thead><tbody>" +
      s.members.map(memberRow).join("") +
      "</tbody></table>" + migrationOf(s) + "</section>"
    );
  });
  document.getElementById("shards").innerHTML = html.join("");
  const down = state.shards.flatMap((s) => s.members).filter((m) => !m.up).length;
  document.getElementById("meta").textContent =
    state.shards.length + " shards · " + (down ? down + " member(s) down · " : "all members up · ") + "served by " + state.served_by + " · updated " + new Date(state.at).toLocaleTimeString();
  document.body.dataset.updated = state.at;
}

async function refresh() {
  const banner = document.getElementById("banner");
  try {
    const res = await fetch("/dashboard/state", { cache: "no-store", signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error("the node answered " + res.status);
    render(await res.json());
    banner.className = "";
  } catch (err) {
    banner.textContent = "Cannot reach this node: " + err.message + ". Retrying every " + refreshMs / 1000 + " s.";
    banner.className = "on";
  } finally {
    setTimeout(refresh, refreshMs);
  }
}
refresh();
</script>
</body>
</html>
`;
