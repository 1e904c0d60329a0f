// Code Remote dashboard: live updates over Server-Sent Events. Plain JavaScript, no build step, no
// inline script (the Content-Security-Policy allows only this file). Text is only ever set with
// textContent, never parsed as HTML.
"use strict";

(function () {
  var TERMINAL = ["succeeded", "failed", "timed_out", "cancelled", "expired", "lost"];
  var KEEP_CHARS = 64 * 1024;

  function setState(badge, state) {
    badge.textContent = state;
    badge.className = "state state-" + state;
  }

  // Control characters and bidi controls written visibly, as web/controls.py writes them for the page
  // itself: output comes from the machine, and a U+202E would reorder what the owner reads.
  var CONTROLS = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\r(?!\n)/g;

  function visible(text) {
    return text.replace(CONTROLS, function (c) {
      var code = c.charCodeAt(0);
      return code < 256 ? "\\x" + ("0" + code.toString(16)).slice(-2) : "\\u" + ("000" + code.toString(16)).slice(-4);
    });
  }

  function appendOutput(holder, pre, data) {
    // Skip what the page already shows: each stream's received offset is kept on its holder.
    var key = data.stream;
    var have = parseInt(holder.dataset[key] || "0", 10);
    var text = data.text;
    // The bytes the text came from (a text cut inside a character is not as long once encoded again).
    var end = data.offset + (data.length !== undefined ? data.length : new TextEncoder().encode(text).length);
    if (end <= have) return;
    if (data.offset < have) {
      // Overlap: drop the part already shown (byte offsets, so encode to cut exactly).
      var bytes = new TextEncoder().encode(text).slice(have - data.offset);
      text = new TextDecoder().decode(bytes);
    }
    var skipped = data.offset > have;  // the feed sends a long chunk's end only
    holder.dataset[key] = String(end);
    text = visible(text);
    if (skipped) text = "[…]\n" + text;
    if (key === "stderr") text = text.replace(/^/gm, "[stderr] ");
    var all = pre.textContent + text;
    if (all.length > KEEP_CHARS) all = "[…]\n" + all.slice(all.length - KEEP_CHARS);
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = all;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function connect(url, handlers, status) {
    var source = new EventSource(url);
    source.addEventListener("open", function () { if (status) status.textContent = "Live."; });
    source.addEventListener("error", function () {
      if (!status) return;
      // CLOSED: the server refused the reconnection (signed out, or the sign-in expired).
      status.textContent = source.readyState === EventSource.CLOSED ? "Stopped: reload the page, or sign in again." : "Reconnecting…";
    });
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) { handlers[name](JSON.parse(event.data)); });
    });
    return source;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function liveList(list) {
    var status = document.getElementById("live-status");
    var empty = document.getElementById("live-empty");
    function card(id) { return list.querySelector('li[data-command="' + CSS.escape(id) + '"]'); }
    function addCard(data) {
      var li = el("li", "card");
      li.dataset.command = data.command;
      li.dataset.stdout = "0";
      li.dataset.stderr = "0";
      var h2 = el("h2");
      var link = el("a", "", data.tool + " on " + data.machine);
      link.href = list.dataset.commandUrl.replace("COMMAND", encodeURIComponent(data.command));
      h2.appendChild(link);
      h2.appendChild(document.createTextNode(" "));
      h2.appendChild(el("span", "state state-" + data.to, data.to));
      var what = el("p", "what");
      what.appendChild(el("code", "", visible(data.summary || "")));
      var pre = el("pre", "output");
      pre.tabIndex = 0;
      pre.setAttribute("aria-label", "Output of " + data.command.slice(0, 8));
      li.appendChild(h2);
      li.appendChild(what);
      li.appendChild(el("p", "note", data.when || ""));
      li.appendChild(pre);
      if (TERMINAL.indexOf(data.to) < 0) li.appendChild(cancelForm(data));
      list.insertBefore(li, list.firstChild);
      if (empty) empty.hidden = true;
      return li;
    }
    function cancelForm(data) {
      // The same form the server renders for a card: a POST with the page's CSRF token.
      var form = el("form", "card-cancel");
      form.method = "post";
      form.action = list.dataset.cancelUrl.replace("COMMAND", encodeURIComponent(data.command));
      [["csrf_token", list.dataset.csrf], ["back", "live"]].forEach(function (field) {
        var input = el("input");
        input.type = "hidden";
        input.name = field[0];
        input.value = field[1];
        form.appendChild(input);
      });
      var button = el("button", "danger", "Cancel");
      button.type = "submit";
      button.setAttribute("aria-label", "Cancel " + data.tool + " " + data.command.slice(0, 8) + " on " + data.machine);
      form.appendChild(button);
      return form;
    }
    connect(list.dataset.eventsUrl, {
      state: function (data) {
        var li = card(data.command);
        if (!li && data.machine) li = addCard(data);
        if (!li) return;
        setState(li.querySelector(".state"), data.to);
        var form = li.querySelector("form.card-cancel");
        if (form && TERMINAL.indexOf(data.to) >= 0) form.remove();
      },
      output: function (data) {
        var li = card(data.command);
        if (li) appendOutput(li, li.querySelector("pre.output"), data);
      }
    }, status);
  }

  function commandPage(head) {
    var badge = document.getElementById("state");
    var pre = document.getElementById("output");
    var timeline = document.getElementById("timeline");
    var source = connect(head.dataset.eventsUrl, {
      state: function (data) {
        // A reconnect may repeat a change the page has: each shows once in the timeline.
        if (timeline.querySelector('li[data-event="' + data.event + '"]')) return;
        setState(badge, data.to);
        var li = el("li");
        li.dataset.event = String(data.event);
        li.appendChild(el("time", "", new Date(data.at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "state state-" + data.to, data.to));
        li.appendChild(el("span", "note", " by " + data.actor + (data.detail ? ": " + visible(data.detail) : "")));
        timeline.appendChild(li);
        if (TERMINAL.indexOf(data.to) >= 0) {
          var form = document.getElementById("cancel-form");
          if (form) form.hidden = true;
          source.close();
        }
      },
      output: function (data) { appendOutput(head, pre, data); }
    }, null);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("live");
    if (list) liveList(list);
    // On a phone the history's filters fold away unless some are set: the commands come first.
    var filters = document.getElementById("filter-box");
    if (filters && filters.dataset.active === "0" && window.matchMedia("(max-width: 40rem)").matches) filters.open = false;
    var head = document.getElementById("command");
    if (head && head.dataset.live === "yes") commandPage(head);
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (target && navigator.clipboard) {
          navigator.clipboard.writeText(target.textContent).then(function () { button.textContent = "Copied"; });
        }
      });
    });
  });
})();
