// Presence on the console pages: who else has a console of this VM open, who controls it, and the buttons
// to take or hand over control. Used by console.js (noVNC) and serial.js (xterm.js).

function badge(text, colour) {
  const span = document.createElement("span");
  span.className = `badge text-bg-${colour} ms-1`;
  span.textContent = text;
  return span;
}

// Render `presence` ({me, watchers, event}) into `list` (a <ul>) and the latest event into `eventLine`.
// `kind` is this page's console kind; `onHandover(sessionId)` is offered on the other operators' rows of
// the same kind when this page controls.
export function renderPresence(list, eventLine, presence, { kind, onHandover }) {
  const mine = presence.watchers.find((w) => w.id === presence.me);
  const iControl = Boolean(mine && mine.control);
  list.replaceChildren();
  for (const watcher of presence.watchers) {
    const item = document.createElement("li");
    item.className = "list-group-item d-flex flex-wrap align-items-center gap-1 py-1 small";
    item.dataset.session = watcher.id;
    const name = document.createElement("span");
    name.textContent = watcher.username;
    item.append(name);
    if (watcher.id === presence.me) item.append(badge("you", "primary"));
    item.append(badge(watcher.kind === "vnc" ? "graphical" : "serial", "secondary"));
    if (watcher.control) item.append(badge("in control", "success"));
    else if (watcher.view_only) item.append(badge("view only", "secondary"));
    if (iControl && watcher.id !== presence.me && watcher.kind === kind && !watcher.view_only) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-sm btn-outline-primary ms-auto py-0 handover";
      button.textContent = "Hand over";
      button.title = `Give control to ${watcher.username}`;
      button.addEventListener("click", () => onHandover(watcher.id));
      item.append(button);
    }
    list.append(item);
  }
  list.dataset.count = String(presence.watchers.length);
  if (presence.event) eventLine.textContent = presence.event;
  return { iControl, mine };
}
