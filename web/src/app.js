// formcheck pages: the member view (own reps, set result, history) and the station screen (display account).
// Served by Mosquitto's websockets listener (http_dir); speaks MQTT over the same port with the person's own
// broker account, so the broker's ACL decides what each page may read. No framework.
import mqtt from "mqtt";

const params = new URLSearchParams(location.search);
const site = params.get("site") || "main";
const prefix = params.get("prefix") || "gym";
const stationId = params.get("station");
const view = params.get("view") === "station" && stationId ? "station" : "member";
const root = `${prefix}/${site}`;
// MQTT always over TLS (wss): on the page's own origin when the page came over https, else on the broker's
// secure websockets port (9001, or ?wss=PORT), never on the plain port that served the page.
const brokerUrl = params.get("broker") || (location.protocol === "https:" ? `wss://${location.host}/mqtt`
  : `wss://${location.hostname}:${params.get("wss") || "9001"}/mqtt`);
const STORE = `formcheck:${view}:${site}`;

const $ = (id) => document.getElementById(id);
const EXERCISE = { squat: "Squat", pushup: "Push-up", curl: "Curl", lunge: "Lunge" };
const now = () => performance.timeOrigin + performance.now();

let client = null;

function text(el, value) {
  el.textContent = value;
  return el;
}

function make(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined) el.textContent = content;
  if (className) el.className = className;
  return el;
}

function gradeBadge(grade, extra) {
  const el = make("span", grade, `grade g-${grade}${extra ? ` ${extra}` : ""}`);
  el.setAttribute("aria-label", `grade ${grade}`);
  return el;
}

function parse(payload) {
  if (!payload || payload.length === 0) return null;
  try {
    return JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return null;
  }
}

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
  $("who").hidden = true;
  $("signout").hidden = true;
  $("login-button").disabled = false;
  text($("login-error"), message || "");
  if (view === "station") text($("login-title"), `Station screen ${stationId}: sign in with the display account`);
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
  if (view === "station") startStation(c);
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

// --- station view ---------------------------------------------------------------------------------------------

// Spoken cue, off unless the screen's URL says speak=1 (on a Pi: Chromium's speech through speech-dispatcher and
// espeak-ng, docs/deploy.md). Only the latest cue is spoken: a queue of old ones would lag behind the set.
const speak = params.get("speak") === "1" && "speechSynthesis" in window;
function say(words) {
  if (!speak) return;
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(new SpeechSynthesisUtterance(words));
}

function startStation(c) {
  $("station").hidden = false;
  text($("title"), `formcheck · ${stationId}`);
  const base = `${root}/nodes/${stationId}`;
  const st = { online: null, idle: false, session: null, setId: null, count: 0, names: {}, profileTopic: null };
  const profileOf = (member) => `${root}/members/${member}/profile`;
  const render = () => {
    const stateEl = $("st-state");
    stateEl.classList.toggle("offline", st.online === false);
    stateEl.classList.toggle("idle", st.online !== false && st.idle);
    if (st.online === false) text(stateEl, "Camera offline");
    // Idle: the node has seen nobody for a while and sends no frames until someone steps into view. A checked-in
    // member between sets keeps their name and count on the screen.
    else if (st.idle) text(stateEl, "Idle: nobody in view");
    else if (!st.session) text(stateEl, "Waiting for check-in");
    else text(stateEl, "Training");
    $("st-training").hidden = !st.session || st.online === false;
    if (st.session) {
      text($("st-member"), st.names[st.session.member] || st.session.member);
      text($("st-exercise"), EXERCISE[st.session.exercise] || "exercise recognised from the first rep");
    }
    text($("st-count"), String(st.count));
  };
  c.subscribe([`${base}/status`, `${base}/session`, `${base}/reps`, `${base}/sets`], { qos: 1 });
  c.on("message", (topic, payload) => {
    const msg = parse(payload);
    if (topic === st.profileTopic) {
      if (st.session) st.names[st.session.member] = msg && msg.display_name;
      render();
      return;
    }
    const kind = topic.slice(base.length + 1);
    if (kind === "status") {
      st.online = !!msg && msg.state === "online" && msg.source_ok !== false;
      st.idle = !!msg && msg.state === "online" && msg.activity === "idle";
    } else if (kind === "session") {
      const changed = !msg || !st.session || msg.member !== st.session.member;
      st.session = msg;
      const wanted = msg ? profileOf(msg.member) : null;
      if (wanted !== st.profileTopic) {
        if (st.profileTopic) c.unsubscribe(st.profileTopic);
        st.profileTopic = wanted;
        if (wanted) c.subscribe(wanted, { qos: 1 });
      }
      if (changed) {
        st.count = 0;
        st.setId = null;
        text($("st-last"), "");
        $("st-summary").hidden = true;
      }
    } else if (kind === "reps" && msg) {
      if (msg.set_id !== st.setId) {
        st.setId = msg.set_id;
        $("st-summary").hidden = true;
      }
      st.count = msg.rep_index;
      if (st.session && !st.session.exercise) st.session = { ...st.session, exercise: msg.exercise };
      const last = $("st-last");
      // On the screen only what to do ("keep your chest up"): the member's page has the whole sentence.
      const todo = msg.cue ? msg.cue.slice(msg.cue.indexOf(": ") + 2) : "good rep";
      last.replaceChildren(`Rep ${msg.rep_index}: `, gradeBadge(msg.grade), ` ${todo}`);
      say(msg.cue ? `${msg.rep_index}. ${todo}` : `${msg.rep_index}`);
      last.dataset.shownAt = String(now());
    } else if (kind === "sets" && msg) {
      const box = $("st-summary");
      box.replaceChildren(make("p", "Set done: "));
      box.firstChild.append(gradeBadge(msg.grade), ` ${msg.reps} reps, average score ${Math.round(msg.score_mean)}`);
      box.append(make("p", msg.main_fault ? `Next set: ${msg.main_fault}.` : "Nothing to fix: well done."));
      box.hidden = false;
    }
    render();
  });
  render();
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
