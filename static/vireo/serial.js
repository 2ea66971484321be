// The serial console page: xterm.js over /ws/serial/<pk>/ (binary frames: the terminal; text frames: JSON status).
const box = document.getElementById("serial-terminal");
const statusBadge = document.getElementById("serial-status");
const message = document.getElementById("serial-message");
const sizeLabel = document.getElementById("serial-size");
const takeoverButton = document.getElementById("serial-takeover");
const connectButton = document.getElementById("serial-connect");
const copyButton = document.getElementById("serial-copy");
const pasteButton = document.getElementById("serial-paste");
const sttyButton = document.getElementById("serial-stty");
const fullscreenButton = document.getElementById("serial-fullscreen");
const presenceList = document.getElementById("serial-presence");
const eventLine = document.getElementById("serial-event");
const encoder = new TextEncoder();

const [{ Terminal }, { FitAddon }, { renderPresence }] = await Promise.all([
  import(box.dataset.xtermModule),
  import(box.dataset.fitModule),
  import(box.dataset.presenceModule),
]);
const term = new Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(box);
let socket = null;
let canType = false;
window.vireoSerial = { term };

const BADGES = {
  connecting: ["connecting…", "secondary"],
  connected: ["connected", "success"],
  watching: ["read only", "info"],
  busy: ["in use elsewhere", "warning"],
  closed: ["closed", "secondary"],
  error: ["unavailable", "danger"],
  disconnected: ["disconnected", "secondary"],
  refused: ["unavailable", "warning"],
};

function setState(state, text = "", { canTakeOver = false } = {}) {
  box.dataset.state = state;
  const [label, colour] = BADGES[state] || [state, "secondary"];
  statusBadge.textContent = label;
  statusBadge.className = `badge text-bg-${colour}`;
  canType = state === "connected";
  pasteButton.disabled = !canType;
  sttyButton.disabled = !canType;
  takeoverButton.hidden = !canTakeOver;
  connectButton.hidden = !["disconnected", "error", "refused"].includes(state);
  message.textContent = text;
  const kind = { error: "danger", connected: "success", watching: "info" }[state] || "warning";
  message.className = `alert alert-${kind} m-2`;
  message.hidden = !text || state === "connected";
}

function send(data) {
  if (canType && socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
}

function resize() {
  fit.fit();
  sizeLabel.textContent = `${term.cols}×${term.rows}`;
}

function connect() {
  setState("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${box.dataset.socketPath}`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      term.write(new Uint8Array(event.data));
      return;
    }
    const status = JSON.parse(event.data);
    if (status.type === "status") {
      setState(status.state, status.message, { canTakeOver: Boolean(status.can_take_over) });
      if (status.state === "connected") term.focus();
    } else if (status.type === "presence") {
      renderPresence(presenceList, eventLine, status, {
        kind: "serial",
        onHandover: (target) => socket && socket.send(JSON.stringify({ type: "handover", to: target })),
      });
    } else if (status.type === "error") {
      eventLine.textContent = status.message;
    }
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    if (box.dataset.state === "error") return; // the server said why
    setState(
      "disconnected",
      event.wasClean
        ? "The serial console was closed. Reconnect to open it again."
        : "The connection to Vireo was lost. Reconnect to try again.",
    );
  });
}

term.onData(send);
term.attachCustomKeyEventHandler((event) => {
  if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
  if (event.code === "KeyC") {
    copySelection();
    return false;
  }
  if (event.code === "KeyV") {
    pasteClipboard();
    return false;
  }
  return true;
});

function copySelection() {
  const text = term.getSelection();
  if (text) navigator.clipboard.writeText(text).catch((error) => setState(box.dataset.state, `Copy refused: ${error.message}`));
}

function pasteClipboard() {
  navigator.clipboard
    .readText()
    .then((text) => {
      term.paste(text);
      term.focus();
    })
    .catch((error) => setState(box.dataset.state, `Paste refused by the browser: ${error.message}`));
}

copyButton.addEventListener("click", copySelection);
pasteButton.addEventListener("click", pasteClipboard);
sttyButton.addEventListener("click", () => {
  send(`stty rows ${term.rows} cols ${term.cols}\r`);
  term.focus();
});
takeoverButton.addEventListener("click", () => socket && socket.send(JSON.stringify({ type: "takeover" })));
connectButton.addEventListener("click", connect);
fullscreenButton.addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else box.requestFullscreen().catch((error) => setState(box.dataset.state, `Full screen refused: ${error.message}`));
});
new ResizeObserver(resize).observe(box);
resize();

if (box.dataset.refused) {
  setState("refused", message.textContent);
  connectButton.hidden = false;
} else {
  connect();
}
