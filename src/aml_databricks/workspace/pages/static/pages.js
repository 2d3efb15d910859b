// Run page: refresh the run's body while it is active (no full reload), Cancel, scroll to the failing cell;
// code blocks get a light keyword highlighting. Everything inserted comes from the server's escaped HTML.
(function () {
  "use strict";
  var KEYWORDS = {
    python: "and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield None True False",
    sql: "select from where group by order having limit join left right inner outer on as and or not in is null insert into values create table view drop alter update delete set with union all distinct case when then else end describe show"
  };
  function highlight(pre) {
    var lang = (pre.className.match(/lang-(\w+)/) || [])[1];
    if (!KEYWORDS[lang] || pre.dataset.highlighted) return;
    var words = new Set(KEYWORDS[lang].split(" "));
    var text = pre.textContent, out = document.createDocumentFragment();
    var token = /(#[^\n]*|--[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|\b\d+(?:\.\d+)?\b|\b[A-Za-z_]\w*\b)/g;
    var last = 0, m;
    while ((m = token.exec(text)) !== null) {
      out.appendChild(document.createTextNode(text.slice(last, m.index)));
      var t = m[0], cls = null;
      if ((t[0] === "#" && lang === "python") || (t.slice(0, 2) === "--" && lang === "sql")) cls = "tok-com";
      else if (t[0] === "'" || t[0] === '"') cls = "tok-str";
      else if (/^\d/.test(t)) cls = "tok-num";
      else if (words.has(lang === "sql" ? t.toLowerCase() : t)) cls = "tok-kw";
      if (cls) { var span = document.createElement("span"); span.className = cls; span.textContent = t; out.appendChild(span); }
      else out.appendChild(document.createTextNode(t));
      last = m.index + t.length;
    }
    out.appendChild(document.createTextNode(text.slice(last)));
    pre.textContent = "";
    pre.appendChild(out);
    pre.dataset.highlighted = "1";
  }
  function decorate(root) {
    root.querySelectorAll("pre.source").forEach(highlight);
    var cancel = root.querySelector("#cancel");
    if (cancel) cancel.addEventListener("click", function () {
      cancel.disabled = true;
      fetch("/runs/" + cancel.dataset.runId + "/cancel", {method: "POST", credentials: "same-origin"}).then(refresh);
    });
  }
  var run = document.getElementById("run");
  var shown = null;
  function scrollToFailure() {
    var failed = run.querySelector(".cell-error");
    if (failed && !run.dataset.scrolled) { failed.scrollIntoView({block: "center"}); run.dataset.scrolled = "1"; }
  }
  function refresh() {
    return fetch("/runs/" + run.dataset.runId + "/body", {credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) return;
      if (html !== shown) {  // replace only what changed: no flicker while nothing happens
        shown = html;
        run.innerHTML = html;
        decorate(run);
        scrollToFailure();
      }
      var flag = run.querySelector("#active-flag");
      run.dataset.active = flag ? flag.dataset.active : "false";
    });
  }
  function poll() {
    if (run.dataset.active !== "true") return;
    refresh().finally(function () { setTimeout(poll, 1000); });
  }
  decorate(document);
  if (run) { scrollToFailure(); setTimeout(poll, 1000); }
})();
