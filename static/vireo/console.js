// The console page: asks Vireo for a single-use websockify URL, then shows the VM's screen with noVNC.
const screen = document.getElementById("console-screen");
const statusBadge = document.getElementById("console-status");
const message = document.getElementById("console-message");
const connectButton = document.getElementById("console-connect");
const cadButton = document.getElementById("console-cad");
const scaleButton = document.getElementById("console-scale");
const fullscreenButton = document.getElementById("console-fullscreen");
const takeoverButton = document.getElementById("console-takeover");
const modeBadge = document.getElementById("console-mode");
const presenceList = document.getElementById("console-presence");
const eventLine = document.getElementById("console-event");
const mayControl = Boolean(screen.dataset.mayControl);
let rfb = null;
let scaleToFit = true;
let mySession = null; // this page's console session (from the ticket)
let iControl = false;
let presenceSocket = null;
let lastPresence = null;
const { renderPresence } = await import(screen.dataset.presenceModule);
const keysButton = document.getElementById("console-keys");
const clipboardText = document.getElementById("console-clipboard");
const clipboardSend = document.getElementById("console-clipboard-send");
const typeButton = document.getElementById("console-type");

// X11 keysyms (noVNC sends keysyms; QEMU maps them to the guest's keys).
const KEYSYM = {
  ctrl: 0xffe3, alt: 0xffe9, shift: 0xffe1, super: 0xffeb, backspace: 0xff08, tab: 0xff09,
  enter: 0xff0d, escape: 0xff1b, delete: 0xffff, print: 0xff61,
  f1: 0xffbe, f2: 0xffbf, f4: 0xffc1, f7: 0xffc4,
};
// Characters typed with Shift on a US keyboard (the layout QEMU assumes by default).
const SHIFTED = new Set('~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ');

function sendCombo(names) {
  if (!rfb || !iControl) return;
  const syms = names.split(" ").map((name) => KEYSYM[name]);
  for (const sym of syms) rfb.sendKey(sym, null, true);
  for (const sym of syms.reverse()) rfb.sendKey(sym, null, false);
  rfb.focus();
}

// "Paste as keystrokes": type text into a guest that has no clipboard support, key by key.
async function typeText(text) {
  let skipped = 0;
  for (const char of text.replace(/\r\n?/g, "\n")) {
    if (!rfb || !iControl) return;
    const code = char.codePointAt(0);
    let sym = null;
    if (char === "\n") sym = KEYSYM.enter;
    else if (char === "\t") sym = KEYSYM.tab;
    else if (code >= 0x20 && code <= 0x7e) sym = code;
    if (sym === null) {
      skipped += 1;
      continue;
    }
    const shift = SHIFTED.has(char);
    if (shift) rfb.sendKey(KEYSYM.shift, null, true);
    rfb.sendKey(sym, null, true);
    rfb.sendKey(sym, null, false);
    if (shift) rfb.sendKey(KEYSYM.shift, null, false);
    await new Promise((resolve) => setTimeout(resolve, 4));
  }
  if (skipped) showMessage(`${skipped} character(s) have no key on a US keyboard and were not typed.`, "warning");
  rfb && rfb.focus();
}

// Only the console in control sends keyboard and mouse (websockify drops the others' input anyway).
function applyControl() {
  const connected = screen.dataset.state === "connected";
  if (rfb) rfb.viewOnly = !iControl;
  screen.dataset.control = iControl ? "true" : "false";
  modeBadge.hidden = !connected || iControl;
  modeBadge.textContent = mayControl ? "watching" : "view only";
  takeoverButton.hidden = !connected || iControl || !mayControl;
  cadButton.disabled = !connected || !iControl;
  keysButton.disabled = !connected || !iControl;
  clipboardSend.disabled = !connected || !iControl;
  typeButton.disabled = !connected || !iControl;
}

function showPresence(presence) {
  lastPresence = presence;
  const shown = renderPresence(presenceList, eventLine, { ...presence, me: mySession }, {
    kind: "vnc",
    onHandover: (target) => sendPresence({ type: "handover", session: mySession, to: target }),
  });
  iControl = shown.iControl;
  applyControl();
}

function sendPresence(message) {
  if (presenceSocket && presenceSocket.readyState === WebSocket.OPEN) presenceSocket.send(JSON.stringify(message));
}

function openPresence() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  presenceSocket = new WebSocket(`${scheme}://${location.host}${screen.dataset.presencePath}`);
  presenceSocket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "presence") showPresence(message);
    else if (message.type === "error" || message.type === "status") showMessage(message.message, "warning");
  });
  presenceSocket.addEventListener("close", () => {
    presenceSocket = null;
    setTimeout(openPresence, 3000); // presence is a convenience: keep trying while the page is open
  });
}

function setState(state, label, colour) {
  screen.dataset.state = state;
  statusBadge.textContent = label;
  statusBadge.className = `badge text-bg-${colour}`;
  connectButton.hidden = state === "connected" || state === "connecting";
  applyControl();
}

function showMessage(text, kind = "warning") {
  message.textContent = text;
  message.className = `alert alert-${kind} m-3`;
  message.hidden = !text;
}

function applyScale() {
  screen.classList.toggle("scale-fit", scaleToFit);
  scaleButton.setAttribute("aria-pressed", String(scaleToFit));
  scaleButton.querySelector("span").textContent = scaleToFit ? "Scale to fit" : "1:1";
  if (rfb) {
    rfb.scaleViewport = scaleToFit;
    rfb.clipViewport = false;
  }
}

async function connect() {
  setState("connecting", "connecting…", "secondary");
  showMessage("");
  let answer;
  try {
    const response = await fetch(screen.dataset.ticketUrl, {
      method: "POST",
      headers: { "X-CSRFToken": screen.dataset.csrf, Accept: "application/json" },
      credentials: "same-origin",
    });
    answer = await response.json().catch(() => ({ error: `Vireo answered ${response.status}.` }));
    if (!response.ok) throw new Error(answer.error || `Vireo answered ${response.status}.`);
  } catch (error) {
    setState("refused", "unavailable", "danger");
    showMessage(error.message, "danger");
    return;
  }
  mySession = answer.session;
  iControl = false;
  const { default: RFB } = await import(screen.dataset.rfbModule);
  rfb = new RFB(screen, answer.url, { shared: true });
  rfb.viewOnly = true; // until presence says this console controls
  window.vireoConsole = { rfb, session: mySession };
  rfb.focusOnClick = true;
  applyScale();
  rfb.addEventListener("connect", () => {
    setState("connected", "connected", "success");
    if (lastPresence) showPresence(lastPresence);
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (event) => {
    rfb = null;
    setState("disconnected", "disconnected", "secondary");
    showMessage(
      event.detail.clean
        ? "The console was closed. Reconnect to open it again."
        : "The console connection failed or was lost (the VM may have stopped, or the console service is not running). Reconnect to try again.",
      event.detail.clean ? "secondary" : "danger",
    );
  });
  rfb.addEventListener("clipboard", (event) => {
    clipboardText.value = event.detail.text; // what the VM copied
  });
  rfb.addEventListener("securityfailure", (event) => {
    showMessage(`The VM's VNC server refused the connection: ${event.detail.reason || "security failure"}.`, "danger");
  });
  rfb.addEventListener("credentialsrequired", () => {
    showMessage("The VM's VNC display asks for a password, which Vireo does not support yet.", "danger");
    rfb.disconnect();
  });
}

connectButton.addEventListener("click", connect);
takeoverButton.addEventListener("click", () => sendPresence({ type: "takeover", session: mySession }));
for (const item of document.querySelectorAll("[data-keys]")) {
  item.addEventListener("click", () => sendCombo(item.dataset.keys));
}
clipboardSend.addEventListener("click", () => rfb && iControl && rfb.clipboardPasteFrom(clipboardText.value));
typeButton.addEventListener("click", () => typeText(clipboardText.value));
cadButton.addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
scaleButton.addEventListener("click", () => {
  scaleToFit = !scaleToFit;
  applyScale();
});
fullscreenButton.addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else screen.requestFullscreen().catch((error) => showMessage(`Full screen refused: ${error.message}`));
});

openPresence();
if (screen.dataset.refused) {
  setState("refused", "unavailable", "warning");
  connectButton.hidden = false;
} else {
  connect();
}
