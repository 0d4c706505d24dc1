// formcheck pages: the member view (own reps, set result, history), the station screen and the wall (display
// account). Served by Mosquitto's websockets listener (http_dir); speaks MQTT over the same port with the person's
// own broker account, so the broker's ACL decides what each page may read. No framework.
import mqtt from "mqtt";
import { $, gradeBadge, make, now, text } from "./dom.js";
import { startStation } from "./station.js";
import { EXERCISE, parse } from "./stations.js";
import { startWall } from "./wall.js";

const params = new URLSearchParams(location.search);
const site = params.get("site") || "main";
const prefix = params.get("prefix") || "gym";
const stationId = params.get("station");
const wanted = params.get("view");
const view = wanted === "wall" ? "wall" : wanted === "station" && stationId ? "station" : "member";
// How long the wall shows a station's last set once it is graded, seconds (?set_s=, default 2 minutes).
const setShownS = Math.max(1, Number(params.get("set_s")) || 120);
const root = `${prefix}/${site}`;
// MQTT always over TLS (wss): on the page's own origin when the page came over https, else on the broker's
// secure websockets port (9001, or ?wss=PORT), never on the plain port that served the page.
const brokerUrl = params.get("broker") || (location.protocol === "https:" ? `wss://${location.host}/mqtt`
  : `wss://${location.hostname}:${params.get("wss") || "9001"}/mqtt`);
const STORE = `formcheck:${view}:${site}`;

let client = null;

// --- login --------------------------------------------------------------------------------------------------

function loginError(err) {
  const code = err && (err.code ?? err.reasonCode);
  // MQTT 3.1.1: 4 bad user name or password, 5 not authorised; MQTT 5: 134, 135.
  if ([4, 5, 134, 135].includes(code)) return "Wrong name or password. Check them and try again.";
  return "Cannot reach the gym's server. Check the Wi-Fi and try again.";
}

function showLogin(message) {
  $("login").hidden = false;
  $("member").hidden = true;
  $("station").hidden = true;
  $("wall").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("login-button").disabled = false;
  text($("login-error"), message || "");
  if (view === "station") text($("login-title"), `Station screen ${stationId}: sign in with the display account`);
  if (view === "wall") text($("login-title"), "Wall display: sign in with the display account");
}

function connect(username, password, remember) {
  $("login-button").disabled = true;
  text($("login-error"), "");
  let connected = false;
  const c = mqtt.connect(brokerUrl, {
    username, password, clientId: username, protocolVersion: 5, clean: true, keepalive: 30,
    reconnectPeriod: 0, connectTimeout: 10000, resubscribe: true,
  });
  client = c;
  c.on("connect", () => {
    if (!connected) {
      connected = true;
      c.options.reconnectPeriod = 3000; // from now on, come back after a network loss
      if (remember) localStorage.setItem(STORE, JSON.stringify({ username, password }));
      start(c, username);
    }
  });
  c.on("error", (err) => {
    if (!connected) {
      c.end(true);
      if (client === c) showLogin(loginError(err));
    }
  });
  c.on("close", () => {
    if (!connected && client === c && !$("login").hidden && $("login-button").disabled) {
      showLogin(loginError(null));
    }
  });
  c.on("disconnect", (packet) => {
    if (packet && packet.reasonCode === 142) {
      // One connection per account: another screen signed in with this account.
      c.end(true);
      client = null;
      showLogin("Signed in on another device. Sign in again to use this one.");
    }
  });
}

function signOut() {
  localStorage.removeItem(STORE);
  if (client) client.end(true);
  client = null;
  location.reload();
}

function start(c, username) {
  $("login").hidden = true;
  $("signout").hidden = false;
  if (view === "station") startStation(c, root, stationId, params.get("speak") === "1");
  else if (view === "wall") startWall(c, root, setShownS);
  else startMember(c, username);
}

// --- member view ----------------------------------------------------------------------------------------------

function startMember(c, member) {
  $("member").hidden = false;
  text($("who"), `Signed in as ${member}`).hidden = false;
  const base = `${root}/members/${member}`;
  let currentSet = null;
  let asked = false; // a start / stop of this page is waiting for its answer
  const here = stationId ? makeStationCard(c, base, () => { asked = true; }) : null;
  c.subscribe([`${base}/reps`, `${base}/notifications`, `${base}/history`, `${base}/session`, `${base}/profile`],
    { qos: 1 });
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("display-name").value.trim();
    if (!name) {
      text($("name-status"), "Enter a name of 1 to 40 characters.");
      return;
    }
    c.publish(`${base}/profile`, JSON.stringify({ v: 1, display_name: name }), { qos: 1, retain: true }, (err) => {
      text($("name-status"), err ? "Not saved: try again." : `Saved: station screens now show “${name}”`);
    });
  });
  c.on("message", (topic, payload) => {
    const msg = parse(payload);
    if (topic === `${base}/profile`) {
      if (msg && msg.display_name) {
        $("display-name").value = msg.display_name;
        text($("who"), `Signed in as ${msg.display_name}`);
      }
      return;
    }
    if (topic === `${base}/session`) {
      if (here) here(msg || {}, asked);
      asked = false;
      return;
    }
    if (!msg) return;
    if (topic === `${base}/reps`) {
      if (msg.set_id !== currentSet) {
        currentSet = msg.set_id;
        $("live-reps").replaceChildren();
      }
      text($("live-status"), `${EXERCISE[msg.exercise] || msg.exercise} at ${msg.node}: set in progress`);
      text($("live-count"), String(msg.rep_index));
      const li = make("li");
      li.dataset.repIndex = String(msg.rep_index);
      li.append(gradeBadge(msg.grade), ` score ${Math.round(msg.score)}`);
      if (msg.cue) li.append(make("span", ` · ${msg.cue}`));
      $("live-reps").append(li);
      li.dataset.shownAt = String(now());
    } else if (topic === `${base}/notifications`) {
      renderResult(msg);
      if (msg.set_id === currentSet) text($("live-status"), "Set finished: your grade is below.");
    } else if (topic === `${base}/history`) {
      renderHistory(msg.sets || []);
    }
  });
}

// The QR code's station: start and stop there. The check-in service answers on members/{me}/session.
function makeStationCard(c, base, onAsk) {
  $("here").hidden = false;
  text($("here-title"), `Station ${stationId}`);
  const ask = (action) => {
    const request = { v: 1, action, node: stationId };
    if (action === "start" && $("exercise").value) request.exercise = $("exercise").value;
    text($("here-error"), "");
    onAsk();
    c.publish(`${base}/checkin`, JSON.stringify(request), { qos: 1 });
  };
  $("start").addEventListener("click", () => ask("start"));
  $("stop").addEventListener("click", () => ask("stop"));
  const render = (state, answered) => {
    const mine = state.node === stationId;
    if (mine) {
      text($("here-status"), `You are checked in at ${stationId}`
        + (state.exercise ? ` (${EXERCISE[state.exercise]}).` : ".") + " Train: your reps appear below.");
    } else if (state.node) {
      text($("here-status"), `You are checked in at ${state.node}. Start moves you to ${stationId}.`);
    } else {
      text($("here-status"), `Tap Start when you are at ${stationId}.`);
    }
    $("start").hidden = mine;
    $("stop").hidden = !mine;
    $("exercise").disabled = mine;
    text($("here-error"), answered && state.error ? state.error : "");
  };
  render({}, false); // no retained state: not checked in anywhere
  return render;
}

function renderResult(s) {
  const box = make("div");
  const head = make("p");
  head.append(gradeBadge(s.grade, "big-grade"), ` ${EXERCISE[s.exercise] || s.exercise}, ${s.reps} reps, `
    + `average score ${Math.round(s.score_mean)}`);
  box.append(head);
  box.append(make("p", s.main_fault ? `What to fix: ${s.main_fault}.` : "Nothing to fix: well done.", "fix"));
  if (!s.complete) box.append(make("p", "The set was cut short (the station went offline)."));
  box.append(make("p", new Date(s.end_ts).toLocaleString(), "muted"));
  box.dataset.setId = s.set_id;
  $("result").replaceChildren(box);
}

function renderHistory(sets) {
  if (sets.length === 0) {
    $("history").replaceChildren(make("p", "No sets yet."));
    return;
  }
  const table = make("table");
  const head = make("tr");
  for (const [label, cls] of [["When"], ["Exercise"], ["Reps"], ["Grade"], ["Score", "hide-narrow"],
    ["To fix", "hide-narrow"]]) {
    const th = make("th", label, cls);
    th.scope = "col";
    head.append(th);
  }
  const thead = make("thead");
  thead.append(head);
  const body = make("tbody");
  for (const s of sets) {
    const tr = make("tr");
    const grade = make("td");
    grade.append(gradeBadge(s.grade));
    tr.append(make("td", new Date(s.end_ts).toLocaleDateString(undefined, { day: "numeric", month: "short" })),
      make("td", EXERCISE[s.exercise] || s.exercise), make("td", String(s.reps)), grade,
      make("td", String(Math.round(s.score_mean)), "hide-narrow"), make("td", s.main_fault || "–", "hide-narrow"));
    body.append(tr);
  }
  table.append(thead, body);
  $("history").replaceChildren(table);
}

// --- start ----------------------------------------------------------------------------------------------------

if (params.get("kiosk") === "1") document.body.classList.add("kiosk");
$("signout").addEventListener("click", signOut);
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    text($("login-error"), "Enter your name and password.");
    return;
  }
  connect(username, password, $("remember").checked);
});
showLogin("");
const saved = localStorage.getItem(STORE);
if (saved) {
  try {
    const { username, password } = JSON.parse(saved);
    connect(username, password, true);
  } catch {
    localStorage.removeItem(STORE);
  }
}
