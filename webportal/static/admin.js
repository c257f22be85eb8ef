// The master-key rotation page polls its job's progress until it is done or failed.
"use strict";
(function () {
  const box = document.getElementById("rotation");
  if (!box) return;
  const url = box.dataset.progressUrl;
  const set = (id, value) => {
    const el = document.getElementById(id);
    if (el) el.textContent = String(value);
  };
  async function poll() {
    let data;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      data = await response.json();
    } catch (e) {
      window.setTimeout(poll, 3000);
      return;
    }
    set("rotation-state", data.state);
    set("rotation-done", data.done);
    set("rotation-total", data.total);
    set("rotation-percent", data.percent);
    if (data.primary_version !== null) set("rotation-version", data.primary_version);
    document.getElementById("rotation-bar").value = data.percent;
    if (data.error) {
      const err = document.getElementById("rotation-error");
      err.textContent = data.error;
      err.hidden = false;
    }
    if (data.state !== "done" && data.state !== "failed") window.setTimeout(poll, 1000);
  }
  poll();
})();
