// What a station is doing, from the broker: its node's retained status, its retained session (who is checked in)
// and the live reps and sets the aggregator publishes. One model for the station screen (one station) and the
// wall (every station of the site), so both say the same about a station.

export const EXERCISE = { squat: "Squat", pushup: "Push-up", curl: "Curl", lunge: "Lunge" };

export const PHASE_TEXT = {
  offline: "Camera offline", idle: "Idle: nobody in view", waiting: "Waiting for check-in", training: "Training",
};

export function parse(payload) {
  if (!payload || payload.length === 0) return null;
  try {
    return JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return null;
  }
}

// `{root}/nodes/{node}/{kind}` -> { node, kind }; anything else -> null.
export function nodeTopic(root, topic) {
  const head = `${root}/nodes/`;
  if (!topic.startsWith(head)) return null;
  const parts = topic.slice(head.length).split("/");
  return parts.length === 2 && parts[0] ? { node: parts[0], kind: parts[1] } : null;
}

export const nodeTopics = (root, node) => ["status", "session", "reps", "sets"].map((k) => `${root}/nodes/${node}/${k}`);

export function newStation() {
  // online null: no status seen yet, which is not shown as offline (a screen may connect before its node).
  return { online: null, idle: false, hasStatus: false, session: null, setId: null, count: 0, lastRep: null,
    lastSet: null, lastSetAt: 0 };
}

// Apply one message of the station's topics; returns the kind when it changed what is shown, else null.
export function applyMessage(st, kind, msg, receivedAt) {
  if (kind === "status") {
    st.hasStatus = !!msg;
    // A lost camera (source_ok false) is offline whether the node is idle or not; so are a Last Will (offline),
    // a clean stop (stopped) and a cleared status.
    st.online = !!msg && msg.state === "online" && msg.source_ok !== false;
    st.idle = !!msg && msg.state === "online" && msg.activity === "idle";
    return kind;
  }
  if (kind === "session") {
    const changed = !msg || !st.session || msg.member !== st.session.member;
    st.session = msg && msg.member ? msg : null;
    if (changed) {
      st.count = 0;
      st.setId = null;
      st.lastRep = null;
      st.lastSet = null;
    }
    return kind;
  }
  if (!msg) return null;
  if (kind === "reps") {
    if (msg.set_id !== st.setId) {
      st.setId = msg.set_id;
      st.lastSet = null;
    }
    st.count = msg.rep_index;
    st.lastRep = msg;
    // A check-in without an exercise: the node recognised it from the first rep.
    if (st.session && !st.session.exercise) st.session = { ...st.session, exercise: msg.exercise };
    return kind;
  }
  if (kind === "sets") {
    st.lastSet = msg;
    st.lastSetAt = receivedAt;
    return kind;
  }
  return null;
}

export function phaseOf(st) {
  if (st.online === false) return "offline";
  // Idle: the node has seen nobody for a while and sends no frames until someone steps into view. A checked-in
  // member between sets keeps their name and count on the screen.
  if (st.idle) return "idle";
  return st.session ? "training" : "waiting";
}

// A checked-in member is shown while the camera is there.
export const showsMember = (st) => !!st.session && st.online !== false;

export function exerciseLabel(st) {
  return (st.session && EXERCISE[st.session.exercise]) || "exercise recognised from the first rep";
}

// What a screen calls a member: the display name from their profile; without one, the pseudonymous id, cut short
// when it is long (a wall tile has room for a name, not for a 64-character id).
export function memberLabel(names, member) {
  const name = names.get(member);
  if (name) return name;
  return member.length > 12 ? `${member.slice(0, 10)}…` : member;
}

// On a screen only what to do ("keep your chest up"): the member's page has the whole sentence.
export const repTodo = (cue) => (cue ? cue.slice(cue.indexOf(": ") + 2) : "good rep");

// The display names of the members checked in at the watched stations: one subscription to each of their retained
// profiles while they are checked in somewhere, nothing kept after.
export function makeProfiles(client, root, onChange) {
  const names = new Map();
  const topicOf = (member) => `${root}/members/${member}/profile`;
  let watched = new Set();
  return {
    names,
    // members: the members checked in now (every station's session).
    want(members) {
      for (const m of watched) {
        if (!members.has(m)) {
          client.unsubscribe(topicOf(m));
          names.delete(m);
        }
      }
      for (const m of members) if (!watched.has(m)) client.subscribe(topicOf(m), { qos: 1 });
      watched = new Set(members);
    },
    // A message of a profile topic: true when it was one (handled here).
    handle(topic, msg) {
      const head = `${root}/members/`;
      if (!topic.startsWith(head) || !topic.endsWith("/profile")) return false;
      const member = topic.slice(head.length, -"/profile".length);
      if (!watched.has(member)) return true;
      if (msg && typeof msg.display_name === "string" && msg.display_name.trim()) {
        names.set(member, msg.display_name.trim());
      } else {
        names.delete(member);
      }
      onChange();
      return true;
    },
  };
}
