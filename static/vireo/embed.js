// Frames marked data-embed-src load when their tab is first shown, so that a console connects only
// when someone looks at it (the VM page's Console tab).
document.addEventListener("shown.bs.tab", (event) => {
  const pane = document.querySelector(event.target.dataset.bsTarget);
  if (!pane) return;
  for (const frame of pane.querySelectorAll("iframe[data-embed-src]")) {
    if (!frame.getAttribute("src")) frame.src = frame.dataset.embedSrc;
  }
});
