// Small DOM helpers shared by every view of the page.

export const $ = (id) => document.getElementById(id);

export function text(el, value) {
  el.textContent = value;
  return el;
}

export function make(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined) el.textContent = content;
  if (className) el.className = className;
  return el;
}

export function gradeBadge(grade, extra) {
  const el = make("span", grade, `grade g-${grade}${extra ? ` ${extra}` : ""}`);
  el.setAttribute("aria-label", `grade ${grade}`);
  return el;
}

// When something became visible, wall clock in ms: the browser tests compare it with a rep message's arrival.
export const now = () => performance.timeOrigin + performance.now();
