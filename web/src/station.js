// The station screen: one station, for the monitor at the station (display account, read-only).
import { $, gradeBadge, make, now, text } from "./dom.js";
import {
  PHASE_TEXT, applyMessage, exerciseLabel, makeProfiles, memberLabel, newStation, nodeTopic, nodeTopics, parse,
  phaseOf, repTodo, showsMember,
} from "./stations.js";

// Spoken cue, off unless the screen's URL says speak=1 (on a Pi: Chromium's speech through speech-dispatcher and
// espeak-ng, docs/deploy.md). Only the latest cue is spoken: a queue of old ones would lag behind the set.
function speaker(enabled) {
  const on = enabled && "speechSynthesis" in window;
  return (words) => {
    if (!on) return;
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(new SpeechSynthesisUtterance(words));
  };
}

export function startStation(c, root, stationId, speak) {
  $("station").hidden = false;
  text($("title"), `formcheck · ${stationId}`);
  const say = speaker(speak);
  const st = newStation();
  const render = () => {
    const phase = phaseOf(st);
    const stateEl = $("st-state");
    stateEl.classList.toggle("offline", phase === "offline");
    stateEl.classList.toggle("idle", phase === "idle");
    text(stateEl, PHASE_TEXT[phase]);
    $("st-training").hidden = !showsMember(st);
    if (st.session) {
      text($("st-member"), memberLabel(profiles.names, st.session.member));
      text($("st-exercise"), exerciseLabel(st));
    }
    text($("st-count"), String(st.count));
  };
  const profiles = makeProfiles(c, root, render);
  c.subscribe(nodeTopics(root, stationId), { qos: 1 });
  c.on("message", (topic, payload) => {
    const msg = parse(payload);
    if (profiles.handle(topic, msg)) return;
    const where = nodeTopic(root, topic);
    if (!where || where.node !== stationId) return;
    const changed = applyMessage(st, where.kind, msg, now());
    if (changed === "session") {
      profiles.want(new Set(st.session ? [st.session.member] : []));
      if (!st.lastRep) text($("st-last"), "");
      if (!st.lastSet) $("st-summary").hidden = true;
    } else if (changed === "reps") {
      const rep = st.lastRep;
      if (!st.lastSet) $("st-summary").hidden = true;
      const todo = repTodo(rep.cue);
      $("st-last").replaceChildren(`Rep ${rep.rep_index}: `, gradeBadge(rep.grade), ` ${todo}`);
      say(rep.cue ? `${rep.rep_index}. ${todo}` : `${rep.rep_index}`);
      $("st-last").dataset.shownAt = String(now());
    } else if (changed === "sets") {
      const set = st.lastSet;
      const box = $("st-summary");
      const head = make("p", "Set done: ");
      head.append(gradeBadge(set.grade), ` ${set.reps} reps, average score ${Math.round(set.score_mean)}`);
      box.replaceChildren(head,
        make("p", set.main_fault ? `Next set: ${set.main_fault}.` : "Nothing to fix: well done."));
      box.hidden = false;
    }
    render();
  });
  render();
}
