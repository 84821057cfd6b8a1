// xensim trace page, --designs-at: each design's 512 frames drawn as two 32 x 16 grids
// (count_info's count above, type_info's count below; darker: more references).
window.xensimDesigns = function (D) {
  "use strict";
  var ds = D.designs.designs, max = 1;
  ds.forEach(function (x) { x.ci.concat(x.ti).forEach(function (v) { if (v > max) max = v; }); });
  function colour(v, hue) {
    if (!v) return "#f5f5f5";
    var l = 85 - Math.round(55 * Math.log(1 + v) / Math.log(1 + max));
    return "hsl(" + hue + ",70%," + l + "%)";
  }
  Array.prototype.forEach.call(document.querySelectorAll("#designs canvas"), function (c) {
    var x = ds[parseInt(c.getAttribute("data-i"), 10)], g = c.getContext("2d");
    var w = c.width / 32, h = c.height / 32;
    [[x.ci, 0, 210], [x.ti, 16, 20]].forEach(function (part) {
      part[0].forEach(function (v, i) {
        g.fillStyle = colour(v, part[2]);
        g.fillRect((i % 32) * w, (part[1] + Math.floor(i / 32)) * h, w - 1, h - 1);
      });
    });
  });
};
