// This page answered a POST (a form shown again with its errors, or something shown
// once; see webportal/after_post.py). Its history entry becomes a plain GET of its own
// URL, or of data-url: Back to it, or a reload, then loads that page instead of asking
// to send the form again (which would do again what the form did).
"use strict";
(function () {
  const script = document.currentScript;
  const url = (script && script.getAttribute("data-url")) || window.location.href;
  window.history.replaceState(window.history.state, "", url);
})();
