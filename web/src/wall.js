// The wall: every station of the site on one screen (the gym-floor TV), display account, read-only. Stations are
// found from their topics (a node's retained status, a retained session); names come from the members' retained
// profiles, so the screen shows who trains where while storage keeps the pseudonymous id. Nothing is kept.
import { $, gradeBadge, make, now, text } from "./dom.js";
import {
  EXERCISE, PHASE_TEXT, applyMessage, makeProfiles, memberLabel, newStation, nodeTopic, parse, phaseOf,
  showsMember,
} from "./stations.js";

const SHORT = { ...PHASE_TEXT, idle: "Idle" }; // a tile has room for one word of state

// How many columns give the largest tiles of about 5:4 on this screen (one column on a phone).
function columns(count, width, height) {
  if (width < 700) return 1;
  let best = 1;
  let bestSize = 0;
  for (let cols = 1; cols <= Math.max(count, 1); cols++) {
    const rows = Math.ceil(Math.max(count, 1) / cols);
    const size = Math.min(width / cols / 1.25, height / rows);
    if (size > bestSize) {
      best = cols;
      bestSize = size;
    }
  }
  return best;
}

function tileContent(node, st, names, setShownMs, at) {
  const phase = phaseOf(st);
  const head = make("div", undefined, "t-head");
  const title = make("h2", node, "t-name");
  title.id = `tile-${node}`;
  head.append(title, make("p", SHORT[phase], `t-state t-${phase}`));
  const parts = [head];
  if (showsMember(st)) {
    parts.push(make("p", memberLabel(names, st.session.member), "t-member"));
    const ex = EXERCISE[st.session.exercise];
    parts.push(make("p", ex || "Exercise: from the first rep", "t-exercise"));
    const reps = make("p", undefined, "t-reps");
    reps.append(make("span", String(st.count), "t-count"), make("span", st.count === 1 ? "rep" : "reps", "t-unit"));
    if (st.lastRep) reps.append(gradeBadge(st.lastRep.grade, "t-grade"));
    parts.push(reps);
  } else {
    parts.push(make("p", phase === "offline" ? "Not grading" : "Free", "t-free"));
  }
  if (st.lastSet && at - st.lastSetAt < setShownMs) {
    const set = make("p", "Last set ", "t-set");
    set.append(gradeBadge(st.lastSet.grade), ` ${st.lastSet.reps} reps`);
    parts.push(set);
  }
  return { phase, parts };
}

export function startWall(c, root, setShownS) {
  $("wall").hidden = false;
  text($("title"), "formcheck · stations");
  const setShownMs = setShownS * 1000;
  const stations = new Map(); // node -> state, only while it has a status or a session
  const tiles = new Map(); // node -> its <article>
  let expiry = null;
  const grid = $("wall-grid");
  const render = () => {
    const at = now();
    const order = [...stations.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    for (const [node, tile] of tiles) {
      if (!stations.has(node)) {
        tile.remove();
        tiles.delete(node);
      }
    }
    let nextExpiry = Infinity;
    for (const node of order) {
      const st = stations.get(node);
      let tile = tiles.get(node);
      if (!tile) {
        tile = make("article", undefined, "tile");
        tile.dataset.station = node;
        tile.setAttribute("aria-labelledby", `tile-${node}`);
        tiles.set(node, tile);
      }
      const { phase, parts } = tileContent(node, st, profiles.names, setShownMs, at);
      tile.dataset.phase = phase;
      tile.replaceChildren(...parts);
      grid.append(tile); // appending an element already there moves it: the grid follows the sorted order
      if (st.lastSet && at - st.lastSetAt < setShownMs) nextExpiry = Math.min(nextExpiry, st.lastSetAt + setShownMs);
    }
    $("wall-empty").hidden = stations.size > 0;
    grid.style.setProperty("--cols", String(columns(stations.size, grid.clientWidth || innerWidth, innerHeight)));
    // A set's grade goes away on its own: render again when the first one shown expires.
    clearTimeout(expiry);
    if (nextExpiry !== Infinity) expiry = setTimeout(render, nextExpiry - at + 50);
  };
  const profiles = makeProfiles(c, root, render);
  c.subscribe(["status", "session", "reps", "sets"].map((kind) => `${root}/nodes/+/${kind}`), { qos: 1 });
  c.on("message", (topic, payload) => {
    const msg = parse(payload);
    if (profiles.handle(topic, msg)) return;
    const where = nodeTopic(root, topic);
    if (!where) return;
    let st = stations.get(where.node);
    if (!st) {
      // Reps and sets alone do not make a station: they come from the aggregator, the station's own status does.
      if (!msg || (where.kind !== "status" && where.kind !== "session")) return;
      st = newStation();
      stations.set(where.node, st);
    }
    const changed = applyMessage(st, where.kind, msg, now());
    if (!changed) return;
    // A cleared status and no session: the station was taken out of service.
    if (!st.hasStatus && !st.session) stations.delete(where.node);
    if (changed === "session") {
      profiles.want(new Set([...stations.values()].filter((s) => s.session).map((s) => s.session.member)));
    }
    render();
    const tile = tiles.get(where.node);
    if (changed === "reps" && tile) {
      tile.dataset.repIndex = String(st.lastRep.rep_index);
      tile.dataset.shownAt = String(now());
    }
  });
  addEventListener("resize", render);
  render();
}
