/* sealgate webmail: the lock button, recipient chips and the secure-page password dialog.
 *
 * The compose form works without this file (a checkbox and a password field, checked by
 * the server); this only makes it nicer and shows, before sending, what encryption will
 * do for each recipient. Loaded as a file: the portal's CSP allows no inline script.
 */
(function () {
  "use strict";

  // Forms that ask before they act (delete for good, delete an away message).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });

  var form = document.getElementById("compose");
  if (!form) {
    return;
  }
  var strings = JSON.parse(document.getElementById("compose-strings").textContent);
  var LOCK_CONFIRMED = "sealgate.lock-confirmed";

  var checkbox = document.getElementById("encrypt");
  var passwordField = document.getElementById("password");
  var lock = document.getElementById("lock");
  var send = document.getElementById("send");
  var status = document.getElementById("password-status");
  var passwordDialog = document.getElementById("password-dialog");
  var dialogPassword = document.getElementById("dialog-password");
  var dialogError = document.getElementById("dialog-error");
  var needsList = document.getElementById("needs-password-list");
  var lockConfirm = document.getElementById("lock-confirm");
  var attachments = document.getElementById("attachments");
  var attachmentsError = document.getElementById("attachments-error");
  var sizeError = document.getElementById("size-error");
  var icons = document.getElementById("chip-icons").content;
  var recipientInputs = Array.prototype.slice.call(form.querySelectorAll("input[data-recipients]"));

  var lookupUrl = form.getAttribute("data-lookup-url");
  var maxAttachments = parseInt(form.getAttribute("data-max-attachments"), 10);
  var maxMessage = parseInt(form.getAttribute("data-max-message"), 10);
  var minPassword = parseInt(form.getAttribute("data-min-password"), 10);
  var passwordLength = parseInt(form.getAttribute("data-password-length"), 10);
  var alphabet = form.getAttribute("data-password-alphabet");

  var classes = {}; // address (lower-case) -> {kind, fingerprint, pending}
  var pending = 0;
  var passwordSet = passwordField.value.length >= minPassword;
  var tooLarge = false;
  var dialogDismissed = false;
  var drawnFrom = "";

  form.classList.add("js");
  lock.hidden = false;

  // The entries of an address field, split as the server splits them
  // (gateway.compose._entries): line ends, and commas or semicolons outside quotes,
  // comments and angle brackets; a group's name ("team:") names nobody.
  function entries(value) {
    var found = [];
    var current = "";
    var quoted = false;
    var escaped = false;
    var depth = 0;
    var closer = "";
    function end() {
      if (current.trim()) {
        found.push(current.trim());
      }
      current = "";
    }
    for (var i = 0; i < value.length; i += 1) {
      var c = value.charAt(i);
      if (c === "\r" || c === "\n") {
        quoted = escaped = false;
        depth = 0;
        closer = "";
        end();
        continue;
      }
      if (escaped) {
        escaped = false;
      } else if (quoted || depth > 0) {
        if (c === "\\") {
          escaped = true;
        } else if (quoted && c === '"') {
          quoted = false;
        } else if (!quoted && c === "(") {
          depth += 1;
        } else if (!quoted && c === ")") {
          depth -= 1;
        }
      } else if (closer) {
        if (c === closer) {
          closer = "";
        } else if (c === '"') {
          quoted = true;
        }
      } else if (c === "," || c === ";") {
        end();
        continue;
      } else if (c === ":" && current.indexOf("@") < 0) {
        current = "";
        continue;
      } else if (c === '"') {
        quoted = true;
      } else if (c === "(") {
        depth += 1;
      } else if (c === "<") {
        closer = ">";
      } else if (c === "[") {
        closer = "]";
      }
      current += c;
    }
    end();
    return found;
  }

  function addresses(input) {
    return entries(input.value).map(function (entry) {
      var inside = entry.match(/<([^<>]*)>\s*$/);
      return (inside ? inside[1] : entry).trim();
    });
  }

  function allAddresses() {
    var seen = {};
    var result = [];
    recipientInputs.forEach(function (input) {
      addresses(input).forEach(function (address) {
        var key = address.toLowerCase();
        if (!seen[key]) {
          seen[key] = true;
          result.push(address);
        }
      });
    });
    return result;
  }

  function locked() {
    return checkbox.checked;
  }

  function kindOf(address) {
    if (!locked()) {
      return "plain";
    }
    var known = classes[address.toLowerCase()];
    return known ? known.kind : "pending";
  }

  function needingPassword() {
    return allAddresses().filter(function (address) {
      return kindOf(address) === "password";
    });
  }

  function chip(address) {
    var kind = kindOf(address);
    var known = classes[address.toLowerCase()] || {};
    var element = document.createElement("span");
    element.className = "chip chip-" + kind;
    element.setAttribute("data-address", address);
    element.setAttribute("data-kind", kind);
    var icon = icons.querySelector('[data-kind="' + kind + '"]');
    if (icon) {
      var copy = icon.cloneNode(true);
      copy.className = "chip-icon";
      copy.removeAttribute("data-kind");
      element.appendChild(copy);
    }
    var text = document.createElement("span");
    text.className = "chip-address";
    text.textContent = address;
    element.appendChild(text);
    var label = kind === "pending" ? strings.lookingUp : strings.labels[kind];
    if (label) {
      var small = document.createElement("span");
      small.className = "chip-label";
      small.textContent = label;
      element.appendChild(small);
    }
    var title = strings.titles[kind] || "";
    if (kind === "key") {
      title = title.replace("{fingerprint}", known.fingerprint || "");
      element.setAttribute("data-fingerprint", known.fingerprint || "");
    }
    if (title) {
      element.title = title;
    }
    return element;
  }

  function renderChips() {
    recipientInputs.forEach(function (input) {
      var box = document.getElementById("chips-" + input.id);
      box.textContent = "";
      addresses(input).forEach(function (address) {
        box.appendChild(chip(address));
      });
    });
  }

  function renderLock() {
    var closed = locked();
    lock.setAttribute("aria-pressed", closed ? "true" : "false");
    lock.classList.toggle("closed", closed);
    lock.querySelector(".lock-text").textContent = closed ? strings.lockClosedShort : strings.lockOpenShort;
    lock.title = closed ? strings.lockClosed : strings.lockOpen;
    lock.setAttribute("aria-label", lock.title);
  }

  // What the lock and recipient fields held when the lock and chips were last drawn.
  function fieldState() {
    return JSON.stringify(
      [checkbox.checked].concat(
        recipientInputs.map(function (input) {
          return input.value;
        })
      )
    );
  }

  function update() {
    drawnFrom = fieldState();
    renderLock();
    renderChips();
    var needing = needingPassword();
    var needsPassword = locked() && needing.length > 0;
    status.hidden = !needsPassword;
    if (needsPassword) {
      status.querySelector(".text").textContent = passwordSet ? strings.passwordSet : strings.passwordNeeded;
      status.classList.toggle("set", passwordSet);
    }
    var waiting = locked() && pending > 0;
    send.disabled = tooLarge || waiting || (needsPassword && !passwordSet);
    if (needsPassword && !passwordSet && !waiting && !passwordDialog.open && !dialogDismissed) {
      openPasswordDialog();
    }
  }

  function lookup() {
    if (!locked()) {
      update();
      return;
    }
    var missing = allAddresses().filter(function (address) {
      return !classes[address.toLowerCase()];
    });
    if (missing.length === 0) {
      update();
      return;
    }
    var query = missing
      .map(function (address) {
        return "address=" + encodeURIComponent(address);
      })
      .join("&");
    pending += 1;
    update();
    fetch(lookupUrl + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("lookup failed: " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        data.recipients.forEach(function (item) {
          classes[item.address.toLowerCase()] = item;
        });
      })
      .catch(function () {
        // Unknown means "needs a password": the safe guess (the server checks again).
        missing.forEach(function (address) {
          classes[address.toLowerCase()] = { kind: "password", fingerprint: "" };
        });
      })
      .then(function () {
        pending -= 1;
        update();
      });
  }

  function randomPassword() {
    var result = "";
    var limit = 256 - (256 % alphabet.length);
    var bytes = new Uint8Array(1);
    while (result.length < passwordLength) {
      window.crypto.getRandomValues(bytes);
      if (bytes[0] < limit) {
        result += alphabet.charAt(bytes[0] % alphabet.length);
      }
    }
    return result;
  }

  function openPasswordDialog() {
    needsList.textContent = "";
    needingPassword().forEach(function (address) {
      var item = document.createElement("li");
      item.textContent = address;
      needsList.appendChild(item);
    });
    dialogPassword.value = passwordField.value || dialogPassword.value || randomPassword();
    dialogError.hidden = true;
    if (!passwordDialog.open) {
      passwordDialog.showModal();
    }
    dialogPassword.select();
  }

  function closeLock() {
    checkbox.checked = true;
    dialogDismissed = false;
    lookup();
  }

  lock.addEventListener("click", function () {
    if (locked()) {
      checkbox.checked = false;
      update();
      return;
    }
    if (window.localStorage && window.localStorage.getItem(LOCK_CONFIRMED) === "yes") {
      closeLock();
    } else {
      lockConfirm.showModal();
    }
  });

  document.getElementById("confirm-lock").addEventListener("click", function () {
    try {
      window.localStorage.setItem(LOCK_CONFIRMED, "yes");
    } catch (ignored) {
      // Private windows may refuse storage: the question then comes again next time.
    }
    lockConfirm.close();
    closeLock();
  });
  document.getElementById("cancel-lock").addEventListener("click", function () {
    lockConfirm.close();
  });

  document.getElementById("copy-password").addEventListener("click", function () {
    var button = this;
    var done = function () {
      button.textContent = strings.copied;
    };
    dialogPassword.select();
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(dialogPassword.value).then(done, function () {
        if (document.execCommand("copy")) {
          done();
        }
      });
    } else if (document.execCommand("copy")) {
      done();
    }
  });
  document.getElementById("new-password").addEventListener("click", function () {
    dialogPassword.value = randomPassword();
    dialogPassword.select();
  });
  document.getElementById("use-password").addEventListener("click", function () {
    if (dialogPassword.value.length < minPassword) {
      dialogError.textContent = strings.passwordTooShort;
      dialogError.hidden = false;
      return;
    }
    passwordField.value = dialogPassword.value;
    passwordSet = true;
    passwordDialog.close();
    update();
  });
  document.getElementById("cancel-password").addEventListener("click", function () {
    dialogDismissed = true;
    passwordDialog.close();
  });
  passwordDialog.addEventListener("cancel", function () {
    dialogDismissed = true;
  });
  passwordDialog.addEventListener("close", update);
  document.getElementById("change-password").addEventListener("click", function () {
    dialogDismissed = false;
    openPasswordDialog();
  });

  var timer = null;
  recipientInputs.forEach(function (input) {
    input.addEventListener("input", function () {
      renderChips();
      window.clearTimeout(timer);
      timer = window.setTimeout(lookup, 400);
    });
    input.addEventListener("change", lookup);
  });

  attachments.addEventListener("change", function () {
    var total = 0;
    Array.prototype.forEach.call(attachments.files, function (file) {
      total += file.size;
    });
    tooLarge = total > maxAttachments;
    attachmentsError.textContent = tooLarge ? strings.attachmentsTooLarge : "";
    attachmentsError.hidden = !tooLarge;
    update();
  });

  // What the form will post, in bytes, near enough: every field as UTF-8 with the
  // CRLF line ends a browser sends, every file, and room for the multipart framing.
  function postedSize() {
    var total = 4096;
    Array.prototype.forEach.call(form.elements, function (element) {
      if (!element.name || element.disabled) {
        return;
      }
      if (element.type === "file") {
        Array.prototype.forEach.call(element.files, function (file) {
          total += file.size + file.name.length * 3 + 512;
        });
      } else if ((element.type === "checkbox" || element.type === "radio") && !element.checked) {
        return;
      } else {
        total += new Blob([element.value.replace(/\r?\n/g, "\r\n")]).size + 256;
      }
    });
    return total;
  }

  // A form larger than the server reads would come back as an error page with what was
  // written gone: it is not posted, and the page says why (nothing typed is lost).
  form.addEventListener("submit", function (event) {
    var tooBig = postedSize() > maxMessage;
    sizeError.textContent = tooBig ? strings.messageTooLarge : "";
    sizeError.hidden = !tooBig;
    if (tooBig || tooLarge) {
      event.preventDefault();
      (tooBig ? sizeError : attachmentsError).scrollIntoView({ block: "center" });
    }
  });

  // The server asked for a password (sent without this script's help): show it.
  if (document.getElementById("server-needs-password")) {
    passwordSet = false;
  }

  // Back to this page brings its fields back as they were left. Chromium's own form
  // state holds only fields a user typed into: on a page that answered a refused post
  // (webportal/after_post.py), what the server filled in (the recipients, the subject,
  // a text not touched again) was gone after Back. So the fields are kept in this
  // history entry's state when the page is left, and put back when Back or Forward
  // comes to it; the page itself (a GET of the reply, forward or draft it was built
  // from) gives the hidden fields and the list of carried attachments. Neither the
  // password nor a file is kept (a file field cannot be filled in).
  var KEPT_STATE = "sealgate.compose";

  // The send token is kept too: Back to a page whose message went out brings back its
  // token, so a second Send is told "sent already" (webportal/compose.py) rather than
  // sending the message again under the fresh token the reloaded page carries.
  function keptField(element) {
    return (
      element.name &&
      element.type !== "file" &&
      (element.type !== "hidden" || element.name === "send_token") &&
      element.type !== "submit" &&
      element.type !== "button" &&
      element !== passwordField
    );
  }

  function keptKey(element) {
    return element.type === "checkbox" ? element.name + "=" + element.value : element.name;
  }

  window.addEventListener("pagehide", function () {
    var fields = {};
    Array.prototype.forEach.call(form.elements, function (element) {
      if (keptField(element)) {
        fields[keptKey(element)] = element.type === "checkbox" ? element.checked : element.value;
      }
    });
    var state = Object.assign({}, window.history.state || {});
    state[KEPT_STATE] = fields;
    try {
      window.history.replaceState(state, "");
    } catch (error) {
      // Too large for the browser's history: Back gives what Chromium keeps.
    }
  });

  window.addEventListener("pageshow", function () {
    var navigation = (performance.getEntriesByType("navigation") || [])[0];
    var kept = window.history.state && window.history.state[KEPT_STATE];
    if (!kept || !navigation || navigation.type !== "back_forward") {
      return;
    }
    Array.prototype.forEach.call(form.elements, function (element) {
      var key = keptField(element) ? keptKey(element) : null;
      if (key === null || !Object.prototype.hasOwnProperty.call(kept, key)) {
        return;
      }
      if (element.type === "checkbox") {
        element.checked = kept[key] === true;
      } else {
        element.value = String(kept[key]);
      }
    });
  });

  // Back (or a reload) refills the form after this script has run: Chromium restores
  // a page's form state once it has loaded, and "pageshow" comes after that (and again
  // when the page comes back from the back/forward cache). Draw the lock and the
  // chips again from the fields as they are now.
  window.addEventListener("pageshow", function () {
    if (fieldState() !== drawnFrom) {
      lookup();
    }
  });
  lookup();
})();
