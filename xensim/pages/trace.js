// xensim trace page: steps through a run's hypercalls (data: the JSON in #data, made by
// xensim/pages/_record.py; every text shown was decoded there, by the text trace's decoders).
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var F = {};
  D.fields.forEach(function (f, i) { F[f] = i; });
  var steps = D.steps, N = steps.length, cur = 0;
  var FLAG = {slow: D.slow, refused: D.refused, type: D.type, preempted: D.preempted};
  var follow = null;                       // {kind: "frame"|"superpage", mfn: n}
  var $ = function (id) { return document.getElementById(id); };
  var esc = window.xensimPage.esc;
  function hex(n) { return "0x" + n.toString(16); }
  var DOTS = "\u002e\u002e";            // the text trace's range: mfn 0x200..0x3ff
  function parseMfn(s) {
    s = String(s).trim().toLowerCase().replace(/^mfn\s*/, "");
    var n = /^0x/.test(s) ? parseInt(s.slice(2), 16) : parseInt(s, 10);
    return isNaN(n) ? null : n;
  }

  // one word (count_info or type_info) before -> after, field by field
  function wordTable(name, names, table, a, b) {
    var o = table[a], n = table[b];
    var head = "<tr><th>" + name + "</th>", row = "<tr><td>" + esc(n[0]) + "</td>";
    names.forEach(function (f, i) {
      head += "<th>" + esc(f) + "</th>";
      var x = o[1][i], y = n[1][i];
      row += x === y ? "<td>" + esc(y) + "</td>"
                     : '<td class="chg"><s>' + esc(x) + "</s> &rarr; <b>" + esc(y) + "</b></td>";
    });
    return head + "</tr>" + row + "</tr>";
  }
  function runText(r) {
    var s = r[1] === 1 ? "mfn " + hex(r[0])
                       : r[1] + " frames mfn " + hex(r[0]) + DOTS + hex(r[0] + r[1] - 1);
    return s;
  }
  function frames(st) {
    var runs = st[F.F];
    if (!runs.length) return '<p class="hint">none</p>';
    var out = [], shown = Math.min(runs.length, 40);
    for (var i = 0; i < shown; i++) {
      var r = runs[i];
      var same = r[2] === r[3] && r[4] === r[5];
      out.push('<div class="run"><span class="mfn" data-mfn="' + r[0] + '">' + runText(r) +
               "</span>" + (same ? ' <span class="hint">(the same after the step)</span>' : "") +
               '<div class="scroll"><table class="w">' +
               wordTable("count_info", D.ciFields, D.ci, r[2], r[3]) +
               wordTable("type_info", D.tiFields, D.ti, r[4], r[5]) + "</table></div></div>");
    }
    if (runs.length > shown) out.push('<p class="hint">and ' + (runs.length - shown) +
                                      " more runs of frames (in the text trace below)</p>");
    return out.join("");
  }
  function rows(list, heads, fmt) {
    if (!list.length) return '<p class="hint">none</p>';
    var h = "<tr>" + heads.map(function (x) { return "<th>" + x + "</th>"; }).join("") + "</tr>";
    return '<div class="scroll"><table class="w">' + h + list.map(function (x) {
      var c = fmt(x);
      return "<tr><td>" + c[0] + "</td><td>" + c[1] + '</td><td class="chg"><s>' + esc(c[2]) +
             "</s> &rarr; <b>" + esc(c[3]) + "</b></td></tr>";
    }).join("") + "</table></div>";
  }
  function badges(g) {
    var out = "";
    if (g & D.slow) out += '<span class="badge b-slow">slow path</span>';
    if (g & D.fast) out += '<span class="badge b-fast">fast path</span>';
    if (g & D.refused) out += '<span class="badge b-refused">refused</span>';
    if (g & D.type) out += '<span class="badge b-type">type change</span>';
    if (g & D.preempted) out += '<span class="badge b-preempted">preempted</span>';
    return out;
  }

  function touches(st, f) {
    var lo = f.mfn, hi = f.kind === "frame" ? f.mfn + 1 : f.mfn + 512;
    var runs = st[F.F];
    for (var i = 0; i < runs.length; i++)
      if (runs[i][0] < hi && runs[i][0] + runs[i][1] > lo) return runs[i];
    var sp = st[F.S];
    for (i = 0; i < sp.length; i++) if (sp[i][0] >= lo && sp[i][0] < hi) return sp[i];
    return null;
  }
  function followPanel() {
    if (!follow) return;
    var hits = [];
    for (var i = 0; i < N; i++) if (touches(steps[i], follow)) hits.push(i);
    var what = (follow.kind === "frame" ? "frame mfn " : "superpage mfn ") + hex(follow.mfn);
    var out = ["<p><b>" + esc(what) + "</b>: touched by " + hits.length + " of " + N +
               " steps</p>"];
    var last = -1;
    hits.forEach(function (i) { if (i <= cur) last = i; });
    var show = hits.length > 300 ? hits.filter(function (i) {
      return Math.abs(i - cur) < 150; }) : hits;
    out.push('<table class="w"><tr><th>step</th><th>after it</th></tr>');
    show.forEach(function (i) {
      var st = steps[i], t = touches(st, follow), after;
      if (t.length === 6) after = D.ci[t[3]][1][D.ciFields.indexOf("count")] + " refs, " +
                                  D.ti[t[5]][1][0] + "/" + D.ti[t[5]][1][D.tiFields.indexOf("count")];
      else after = t[1] + " " + t[3];
      out.push('<tr data-step="' + i + '"' + (i === last ? ' class="here"' : "") + "><td>" +
               (i + 1) + "</td><td>" + esc(after) + "</td></tr>");
    });
    out.push("</table>");
    $("followout").innerHTML = out.join("");
    $("followout").setAttribute("data-hits", String(hits.length));
  }

  function draw() {
    var st = steps[cur];
    $("stepno").value = cur + 1;
    $("head").textContent = st[F.h];
    $("where").textContent = "step " + (cur + 1) + " of " + N + ", operation " + (st[F.o] + 1);
    $("result").innerHTML = badges(st[F.g]) + "result: <b>" + esc(st[F.r]) + "</b>";
    $("frames").innerHTML = frames(st);
    $("spage").innerHTML = rows(st[F.S], ["superpage", "word", "before &rarr; after"],
      function (s) { return ["mfn " + hex(s[0]), esc(s[1]), s[2], s[3]]; });
    $("ptes").innerHTML = rows(st[F.P], ["table", "index", "before &rarr; after"],
      function (p) { return ["mfn " + hex(p[0]), hex(p[1]), p[2], p[3]]; });
    $("text").textContent = st[F.L].map(function (i) { return D.lines[i]; }).join("\n");
    followPanel();
    timeline();
    var b = document.body;
    b.setAttribute("data-step", String(cur + 1));
    b.setAttribute("data-steps", String(N));
    b.setAttribute("data-scroll-width", String(document.documentElement.scrollWidth));
  }
  function go(i) { cur = Math.max(0, Math.min(N - 1, i)); draw(); }
  function jump(flag, dir) {
    for (var i = cur + dir; i >= 0 && i < N; i += dir)
      if (steps[i][F.g] & FLAG[flag]) { go(i); return; }
  }

  // the timeline: a tick per step, coloured by what it did
  var tl = $("timeline");
  function timeline() {
    var w = tl.clientWidth || 1200;
    if (tl.width !== w) { tl.width = w; tl.drawn = false; }
    var c = tl.getContext("2d"), h = tl.height;
    if (!tl.drawn) {
      c.fillStyle = "#fafafa"; c.fillRect(0, 0, w, h);
      var colour = [[D.type, "#1e88e5"], [D.refused, "#fb8c00"], [D.slow, "#e53935"],
                    [D.preempted, "#8e24aa"]];
      for (var i = 0; i < N; i++) {
        var g = steps[i][F.g], x = Math.floor(i * w / N);
        c.fillStyle = "#cfd8dc";
        for (var k = 0; k < colour.length; k++) if (g & colour[k][0]) c.fillStyle = colour[k][1];
        c.fillRect(x, 6, Math.max(1, Math.floor(w / N)), h - 6);
      }
      tl.base = c.getImageData(0, 0, w, h);
      tl.drawn = true;
    } else {
      c.putImageData(tl.base, 0, 0);
    }
    c.fillStyle = "#212121";
    c.fillRect(Math.floor(cur * w / N), 0, 2, h);
  }
  tl.addEventListener("click", function (e) {
    go(Math.floor(e.offsetX / tl.clientWidth * N));
  });

  var key = window.xensimPage.stepper({n: N, go: go, cur: function () { return cur; },
    more: function (k) {
      var lower = k.toLowerCase(), flag = {s: "slow", r: "refused", t: "type",
                                         e: "preempted"}[lower];
      if (!flag) return false;
      jump(flag, k === lower ? 1 : -1);
      return true;
    }});
  Array.prototype.forEach.call(document.querySelectorAll("button.jump"), function (b) {
    b.onclick = function () { jump(b.getAttribute("data-flag"), 1); };
  });
  $("followform").onsubmit = function (e) {
    e.preventDefault();
    var n = parseMfn($("followin").value);
    if (n === null) return;
    var kind = $("followkind").value;
    follow = {kind: kind, mfn: kind === "superpage" ? n - n % 512 : n};
    draw();
  };
  $("frames").onclick = function (e) {
    var m = e.target.getAttribute && e.target.getAttribute("data-mfn");
    if (m === null || m === undefined) return;
    follow = {kind: "frame", mfn: parseInt(m, 10)};
    $("followkind").value = "frame"; $("followin").value = hex(follow.mfn);
    draw();
  };
  $("followout").onclick = function (e) {
    var tr = e.target.closest && e.target.closest("tr[data-step]");
    if (tr) go(parseInt(tr.getAttribute("data-step"), 10));
  };
  if (window.xensimDesigns) window.xensimDesigns(D);

  // #step=N&keys=...&follow=MFN&superpage=MFN: what a headless browser asks for
  var q = window.xensimPage.query();
  if (q.follow) follow = {kind: "frame", mfn: parseMfn(q.follow)};
  if (q.superpage) { var s = parseMfn(q.superpage); follow = {kind: "superpage", mfn: s - s % 512}; }
  if (N === 0) {
    $("head").textContent = "No step: nothing was traced (see the notes above).";
    document.body.setAttribute("data-steps", "0");
  }
  window.xensimPage.start(N, key, function (i) { cur = i; draw(); });
})();
