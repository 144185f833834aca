// The interactive map: points on a canvas, a tooltip on hover. The __NAME__ placeholders
// are filled in by genrec.analysis.report.
(function(){
const pts = __DATA__; const cv = document.getElementById("__ID__"); const tip = document.getElementById("__ID__-tip");
const ctx = cv.getContext("2d"); const W = cv.width, H = cv.height, pad = 12;
let x0=Infinity,x1=-Infinity,y0=Infinity,y1=-Infinity;
for (const p of pts){x0=Math.min(x0,p[0]);x1=Math.max(x1,p[0]);y0=Math.min(y0,p[1]);y1=Math.max(y1,p[1]);}
const sx = v => pad + (v-x0)/((x1-x0)||1)*(W-2*pad), sy = v => H - pad - (v-y0)/((y1-y0)||1)*(H-2*pad);
const COLORS = __PALETTE__;
for (const p of pts){ctx.fillStyle=COLORS[p[2]%COLORS.length];ctx.globalAlpha=0.65;
  ctx.beginPath();ctx.arc(sx(p[0]),sy(p[1]),2.2,0,6.283);ctx.fill();}
cv.addEventListener("mousemove", e => {
  const r = cv.getBoundingClientRect(), mx = (e.clientX-r.left)*W/r.width, my = (e.clientY-r.top)*H/r.height;
  let best=null, bd=36;
  for (const p of pts){const d=(sx(p[0])-mx)**2+(sy(p[1])-my)**2; if(d<bd){bd=d;best=p;}}
  if(!best){tip.style.display="none";return;}
  tip.style.display="block"; tip.style.left=(e.pageX+12)+"px"; tip.style.top=(e.pageY+12)+"px";
  tip.textContent = "user " + best[3] + " | cluster " + best[2] + " | " + best[4] + " items" + (best[5] ? " | " + best[5] : "");
});
cv.addEventListener("mouseleave", () => { tip.style.display = "none"; });
})();
