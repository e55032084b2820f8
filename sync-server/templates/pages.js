// Cairn account pages: the one script. Everything works without it; it only adds a copy button
// beside text meant to be copied (a new token's secret, the clone command).
"use strict";
document.querySelectorAll("[data-copy]").forEach(function (button) {
  var target = document.getElementById(button.getAttribute("data-copy"));
  if (!target || !navigator.clipboard) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      button.textContent = "Copied";
      var status = document.getElementById(button.getAttribute("data-copy") + "-status");
      if (status) {
        status.textContent = "Copied to the clipboard.";
      }
    });
  });
});
