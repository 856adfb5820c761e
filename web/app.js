// ringcast's status page: lists the live streams from the admin API every second and plays
// one over HTTP-FLV with mpegts.js (vendored from npm as /ui/mpegts.js).
//
// The admin API may want a bearer token (api_token). The page's own files hold no data and are
// served without it; the data calls send it. It comes from the URL fragment (#token=..., which
// browsers never send to a server, so it reaches no log) or from the form, and stays in this
// tab's sessionStorage.
"use strict";

const REFRESH_MS = 1000;
const TOKEN_KEY = "ringcast.api_token";
const PLAYER_PROTOCOLS = ["rtmp", "http-flv", "rtsp"];

const $ = (id) => document.getElementById(id);
let server = null;
let player = null;
let refreshTimer = null;

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    // Out of the address bar and history, so it is not copied along with the link.
    history.replaceState(null, "", location.pathname + location.search);
  }
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function askForToken(rejected) {
  clearTimeout(refreshTimer);
  $("main").hidden = true;
  $("token-form").hidden = false;
  $("status").textContent = rejected ? "token refused" : "token needed";
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
});

async function start() {
  try {
    server = await api("/api/server");
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken(sessionStorage.getItem(TOKEN_KEY) !== null);
    $("status").textContent = "cannot reach the API: " + error.message;
    refreshTimer = setTimeout(start, REFRESH_MS * 3);
    return;
  }
  $("token-form").hidden = true;
  $("main").hidden = false;
  $("server-info").textContent = "version " + server.version;
  refresh();
}

async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const answer = await api("/api/streams");
    render(answer.streams);
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken(true);
    $("status").textContent = "update failed: " + error.message;
  }
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

// Rows are updated in place, keyed by stream, so a click is never lost to a redraw.
function render(streams) {
  const body = $("streams");
  const seen = new Set();
  for (const stream of streams) {
    seen.add(stream.key);
    let row = body.querySelector(`tr[data-key="${CSS.escape(stream.key)}"]`);
    if (!row) row = newRow(stream.key);
    fill(row, stream);
    body.appendChild(row);
  }
  for (const row of [...body.rows]) {
    if (!seen.has(row.dataset.key)) row.remove();
  }
  $("no-streams").hidden = streams.length > 0;
}

function newRow(key) {
  const row = document.createElement("tr");
  row.dataset.key = key;
  for (const name of ["stream", "publisher", "video", "audio", "bitrate", "players", "uptime", "action"]) {
    const cell = row.insertCell();
    cell.className = name;
    if (name === "bitrate" || name === "uptime") cell.classList.add("num");
  }
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Play";
  button.className = "play";
  button.addEventListener("click", () => play(row.stream));
  row.cells[7].appendChild(button);
  return row;
}

function fill(row, stream) {
  row.stream = stream;
  const [name, publisher, video, audio, bitrate, players, uptime, action] = row.cells;
  name.textContent = stream.key + (stream.live ? "" : " (waiting)");
  const p = stream.publisher;
  publisher.textContent = p ? `${p.protocol} ${p.addr} #${p.conn_id}` : "-";
  const v = stream.video;
  video.textContent = v
    ? [v.codec, v.width && v.height ? `${v.width}x${v.height}` : "", v.fps ? `${v.fps} fps` : ""].filter(Boolean).join(" ")
    : "-";
  const a = stream.audio;
  audio.textContent = a
    ? [a.codec, a.sample_rate ? `${a.sample_rate} Hz` : "", a.channels ? `${a.channels} ch` : ""].filter(Boolean).join(" ")
    : "-";
  bitrate.textContent = stream.bitrate_kbps == null ? "-" : `${stream.bitrate_kbps} kbit/s`;
  players.textContent = PLAYER_PROTOCOLS.map((k) => `${k} ${stream.players_by_protocol[k] ?? 0}`).join(" · ");
  uptime.textContent = stream.uptime_sec == null ? "-" : duration(stream.uptime_sec);
  const button = action.firstChild;
  const playable = stream.live && server.http_flv && window.mpegts && mpegts.isSupported();
  button.disabled = !playable;
  button.title = playable ? "" : !server.http_flv ? "HTTP-FLV is not enabled on this server" : "not live";
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}

function flvUrl(stream) {
  // HTTP-FLV is plain HTTP on its own port, on whatever host name this page was reached by.
  return `http://${location.hostname}:${server.http_flv.port}${stream.play.http_flv}`;
}

function play(stream) {
  stop();
  const url = flvUrl(stream);
  $("player-section").hidden = false;
  $("player-title").textContent = stream.key;
  $("player-url").textContent = url;
  $("player-error").textContent = "";
  player = mpegts.createPlayer(
    { type: "flv", isLive: true, url },
    { enableStashBuffer: false, liveBufferLatencyChasing: true },
  );
  player.on(mpegts.Events.ERROR, (type, detail) => {
    $("player-error").textContent = `${type}: ${detail}`;
  });
  player.attachMediaElement($("player"));
  player.load();
  const started = player.play();
  if (started && started.catch) started.catch((error) => ($("player-error").textContent = String(error)));
}

function stop() {
  if (!player) return;
  player.pause();
  player.unload();
  player.detachMediaElement();
  player.destroy();
  player = null;
  $("player-section").hidden = true;
}

$("stop").addEventListener("click", stop);

takeTokenFromFragment();
start();
