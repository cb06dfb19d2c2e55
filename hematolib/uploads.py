"""How an upload reaches Python: the page's message limit, the page script that refuses larger
uploads, and the files in a FileUpload under ipywidgets 8 and 7."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable

# An upload travels from the page to Python as one websocket message; a larger message than the
# server carries is dropped without a word. The widget tells the page this limit.
JUPYTER_MESSAGE_LIMIT = 10 * 1024 * 1024  # tornado's default websocket_max_message_size
COLAB_MESSAGE_LIMIT = 1_000_000  # Colab drops widget messages of 1 MB or more (ipywidgets issue 3452)
MESSAGE_OVERHEAD = 64 * 1024  # room for the JSON that travels with the file bytes
MESSAGE_LIMIT_ENV = "HEMATO_MESSAGE_LIMIT"  # bytes; set it to the server's websocket_max_message_size

# Runs in the page: refuses an upload larger than the limit on the upload button (class
# hv-limit-N) before the browser reads it, and shows the message HV_MESSAGE instead. FileUpload
# opens its own hidden <input type=file> with .click(), so the guard wraps that call and listens
# to the input's change event first (capture), ahead of the widget's own reader.
_GUARD_JS = """
(function () {
  if (window.hvUploadGuard) { return; }
  window.hvUploadGuard = true;
  var pending = null;
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest && event.target.closest(".hv-upload");
    if (button) { pending = button; setTimeout(function () { pending = null; }, 0); }
  }, true);
  var click = HTMLInputElement.prototype.click;
  HTMLInputElement.prototype.click = function () {
    if (pending && this.type === "file") {
      this.hvButton = pending;
      if (!this.hvGuarded) { this.hvGuarded = true; this.addEventListener("change", guard, true); }
    }
    return click.apply(this, arguments);
  };
  function limitOf(button) {
    var name = Array.prototype.find.call(button.classList, function (c) { return c.indexOf("hv-limit-") === 0; });
    return name ? Number(name.slice(9)) : 0;
  }
  function guard(event) {
    var input = event.currentTarget, button = input.hvButton;
    if (!button) { return; }
    var app = button.closest(".hv-app"), results = app && app.querySelector(".hv-results");
    var shown = results && results.querySelector(".widget-html-content");
    var old = app && app.querySelector(".hv-not-sent");
    if (old) { old.remove(); }
    var files = Array.prototype.slice.call(input.files || []), limit = limitOf(button);
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    if (!limit || total <= limit) { return; }
    event.stopImmediatePropagation();
    input.value = "";
    var names = files.map(function (f) { return f.name; }).join(", ");
    var card = document.createElement("div");
    card.className = "hv-card hv-error hv-not-sent";
    var head = document.createElement("b");
    head.textContent = "Not sent: " + names;
    var text = document.createElement("div");
    text.textContent = HV_MESSAGE.replace("{size}", (total / 1e6).toFixed(1)).replace(/[{]name[}]/g, files[0].name);
    var box = document.createElement("div");
    box.appendChild(head); box.appendChild(text); card.appendChild(box);
    if (results) { results.insertBefore(card, results.firstChild); }
    else { button.parentNode.insertBefore(card, button.nextSibling); }
    if (shown && window.MutationObserver) {  // new cards from Python (the path box): the note goes
      var watch = new MutationObserver(function () { card.remove(); watch.disconnect(); });
      watch.observe(shown, {childList: true, subtree: true, characterData: true});
    }
  }
})();
"""


def message_limit() -> int:
    """Bytes one message from the page to Python can carry here: HEMATO_MESSAGE_LIMIT, Colab's or Jupyter's."""
    text = os.environ.get(MESSAGE_LIMIT_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value <= MESSAGE_OVERHEAD:
            raise ValueError(f"{MESSAGE_LIMIT_ENV}={text!r}: expected the server's websocket_max_message_size "
                             f"in bytes, more than {MESSAGE_OVERHEAD}, e.g. 67108864 for 64 MiB.")
        return value
    return COLAB_MESSAGE_LIMIT if "google.colab" in sys.modules else JUPYTER_MESSAGE_LIMIT


def other_ways(name: str) -> str:
    """How to classify a file that cannot be uploaded here: the path box or the command line."""
    if "google.colab" in sys.modules:
        return (f"Add it in Colab's Files panel, then type /content/{name} in the File path box below, or "
                f"run `!hematovision predict /content/{name}` in a cell.")
    return ("Type its path in the File path box below (the file is read on the machine that runs Python), "
            f"or run `hematovision predict {name}` in a terminal.")


def guard_html(message: str) -> str:
    """The page script that refuses uploads over the button's limit, showing `message` ({size}, {name})."""
    quoted = json.dumps(message).replace("<", "\\u003c")
    return "<script>" + _GUARD_JS.replace("HV_MESSAGE", quoted) + "</script>"


def iter_uploads(value: Any) -> list[tuple[str, bytes]]:
    """(file name, bytes) for every file in a FileUpload value, ipywidgets 8 or 7 style."""
    return [(name, data) for name, data, _size in uploaded_files(value)]


def uploaded_files(value: Any) -> list[tuple[str, bytes, int]]:
    """(file name, bytes, size the browser reported) for every file in a FileUpload value."""
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7: {name: {"metadata": {...}, "content": bytes}}
        return _files((info.get("metadata", {}), name, info.get("content", b"")) for name, info in value.items())
    return _files((f, "upload", f.get("content", b"")) for f in value)  # ipywidgets 8: a tuple of dicts


def files_v7(metadata: Iterable[dict], data: Iterable[Any]) -> list[tuple[str, bytes, int]]:
    """(file name, bytes, size the browser reported) from an ipywidgets 7 FileUpload's `metadata` and `data`."""
    return _files((meta, "upload", content) for meta, content in zip(metadata, data))


def _files(items: Iterable[tuple[dict, str, Any]]) -> list[tuple[str, bytes, int]]:
    """(name, bytes, size) from (metadata, fallback name, content) triples."""
    return [(str(meta.get("name", name)), bytes(content or b""), int(meta.get("size") or 0))
            for meta, name, content in items]
