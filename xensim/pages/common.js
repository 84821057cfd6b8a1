// What every xensim page shares: escaping, the URL fragment (#step=N&keys=...), and the
// stepping (arrow keys, j/k, n/p, Home/End, the prev/next buttons and the step box).
window.xensimPage = {
  esc: function (s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  },
  query: function () {
    var q = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("="); if (p[0]) q[p[0]] = decodeURIComponent(p[1] || "");
    });
    return q;
  },
  // p: {n: steps, cur(): the step, go(i), more(key): the page's own keys (true: handled)}
  stepper: function (p) {
    function key(k) {
      if (k === "ArrowRight" || k === "j" || k === "n") p.go(p.cur() + 1);
      else if (k === "ArrowLeft" || k === "k" || k === "p") p.go(p.cur() - 1);
      else if (k === "Home") p.go(0);
      else if (k === "End") p.go(p.n - 1);
      else return p.more(k);
      return true;
    }
    document.addEventListener("keydown", function (e) {
      if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
      if (key(e.key)) e.preventDefault();
    });
    var $ = function (id) { return document.getElementById(id); };
    $("prev").onclick = function () { p.go(p.cur() - 1); };
    $("next").onclick = function () { p.go(p.cur() + 1); };
    $("stepno").onchange = function () { p.go(parseInt($("stepno").value, 10) - 1); };
    $("nsteps").textContent = String(p.n);
    return key;
  },
  // open the step the URL asks for, press its keys, draw; then say the page is ready
  start: function (n, key, open) {
    var q = window.xensimPage.query();
    if (n > 0) {
      open(q.step ? Math.max(0, Math.min(n - 1, parseInt(q.step, 10) - 1)) : 0);
      (q.keys || "").split("").forEach(key);
    }
    document.body.setAttribute("data-ready", "1");
    // milliseconds from the start of the navigation to the drawn page (the benchmark's)
    document.body.setAttribute("data-load-ms", String(Math.round(performance.now())));
  }
};
