// The console page: asks Vireo for a single-use websockify URL, then shows the VM's screen with noVNC.
const screen = document.getElementById("console-screen");
const statusBadge = document.getElementById("console-status");
const message = document.getElementById("console-message");
const connectButton = document.getElementById("console-connect");
const cadButton = document.getElementById("console-cad");
const scaleButton = document.getElementById("console-scale");
const fullscreenButton = document.getElementById("console-fullscreen");
let rfb = null;
let scaleToFit = true;

function setState(state, label, colour) {
  screen.dataset.state = state;
  statusBadge.textContent = label;
  statusBadge.className = `badge text-bg-${colour}`;
  cadButton.disabled = state !== "connected";
  connectButton.hidden = state === "connected" || state === "connecting";
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
  const { default: RFB } = await import(screen.dataset.rfbModule);
  rfb = new RFB(screen, answer.url, { shared: true });
  window.vireoConsole = { rfb };
  rfb.focusOnClick = true;
  applyScale();
  rfb.addEventListener("connect", () => {
    setState("connected", "connected", "success");
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
  rfb.addEventListener("securityfailure", (event) => {
    showMessage(`The VM's VNC server refused the connection: ${event.detail.reason || "security failure"}.`, "danger");
  });
  rfb.addEventListener("credentialsrequired", () => {
    showMessage("The VM's VNC display asks for a password, which Vireo does not support yet.", "danger");
    rfb.disconnect();
  });
}

connectButton.addEventListener("click", connect);
cadButton.addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
scaleButton.addEventListener("click", () => {
  scaleToFit = !scaleToFit;
  applyScale();
});
fullscreenButton.addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else screen.requestFullscreen().catch((error) => showMessage(`Full screen refused: ${error.message}`));
});

if (screen.dataset.refused) {
  setState("refused", "unavailable", "warning");
  connectButton.hidden = false;
} else {
  connect();
}
