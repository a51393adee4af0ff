// Canvas drawing for the slotpilot console: the 128 x 128 slot grid and small line charts.
// Pure functions of what they are given; console.js owns the data and the refresh loop.

export const SLOT_COUNT = 16384;
export const COLUMNS = 128;
export const CELL = 4;  // CSS pixels per slot: the grid is 512 x 512
export const MARGIN = 14;  // around the grid, so the rings of an edge slot are not cut off
export const MAP_SIZE = COLUMNS * CELL + 2 * MARGIN;
export const MARKER_COLOURS = { open: "#111827", loop: "#ea580c", stuck: "#dc2626" };
export const UNASSIGNED_COLOUR = "#d1d5db";

const LABEL_FONT = "600 11px system-ui, -apple-system, 'Segoe UI', sans-serif";
const AXIS_FONT = "10px system-ui, -apple-system, 'Segoe UI', sans-serif";
const MAX_LABELS = 12;  // more would cover the grid; the list under it names every open slot

// Sizes the canvas's backing store for its CSS size (set by console.css) and the screen's pixel
// ratio, so it stays sharp on HiDPI screens; returns a context that draws in CSS pixels.
export function prepareCanvas(canvas, cssWidth, cssHeight) {
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

// The slot under a mouse position, or -1 outside the grid.
export function slotAt(canvas, clientX, clientY) {
  const box = canvas.getBoundingClientRect();
  const col = Math.floor((clientX - box.left - MARGIN) / CELL);
  const row = Math.floor((clientY - box.top - MARGIN) / CELL);
  if (col < 0 || col >= COLUMNS || row < 0 || row >= SLOT_COUNT / COLUMNS) return -1;
  return row * COLUMNS + col;
}

// Top-left corner of a slot's cell on the canvas, in CSS pixels.
export function cellOrigin(slot) {
  return { x: MARGIN + (slot % COLUMNS) * CELL, y: MARGIN + Math.floor(slot / COLUMNS) * CELL };
}

// grid: { owner: Int16Array(SLOT_COUNT) of master indexes (-1 unassigned), colours: [css colour
// per master index], marks: [{ slot, sourceColour, targetColour, open, loop, stuck, label }] }.
export function drawSlotMap(canvas, grid) {
  const size = MAP_SIZE;
  const ctx = prepareCanvas(canvas, size, size);
  canvas.dataset.margin = String(MARGIN);  // where slot 0 starts, for tests reading pixels
  ctx.clearRect(0, 0, size, size);
  for (let slot = 0; slot < SLOT_COUNT; ) {
    const owner = grid.owner[slot];
    let end = slot + 1;  // runs of one owner within a row: one fillRect each
    while (end < SLOT_COUNT && end % COLUMNS !== 0 && grid.owner[end] === owner) end++;
    const { x, y } = cellOrigin(slot);
    ctx.fillStyle = owner >= 0 ? grid.colours[owner] : UNASSIGNED_COLOUR;
    ctx.fillRect(x, y, (end - slot) * CELL, CELL);
    slot = end;
  }
  for (const mark of grid.marks) drawOpenCell(ctx, mark);
  for (const mark of grid.marks) drawRings(ctx, mark);
  drawLabels(ctx, grid.marks.filter((m) => m.label).slice(0, MAX_LABELS), size);
}

// An open slot's cell: left half in the source's colour, right half in the target's.
function drawOpenCell(ctx, mark) {
  if (!mark.open) return;
  const { x, y } = cellOrigin(mark.slot);
  ctx.fillStyle = mark.sourceColour;
  ctx.fillRect(x, y, CELL / 2, CELL);
  ctx.fillStyle = mark.targetColour;
  ctx.fillRect(x + CELL / 2, y, CELL / 2, CELL);
}

// Concentric rings, so a slot that is open, looping and stuck shows all three.
function drawRings(ctx, mark) {
  const { x, y } = cellOrigin(mark.slot);
  const cx = x + CELL / 2;
  const cy = y + CELL / 2;
  const ring = (radius, width, colour) => {
    ctx.beginPath();
    ctx.arc(cx, cy, radius, 0, 2 * Math.PI);
    ctx.lineWidth = width;
    ctx.strokeStyle = colour;
    ctx.stroke();
  };
  if (mark.open) ring(5.5, 1.5, MARKER_COLOURS.open);
  if (mark.loop) ring(8.5, 2, MARKER_COLOURS.loop);
  if (mark.stuck) ring(12, 2.5, MARKER_COLOURS.stuck);
}

// A label beside each marked slot ("5561 A→B"), moved down when it would cover another.
function drawLabels(ctx, marks, size) {
  ctx.font = LABEL_FONT;
  ctx.textBaseline = "middle";
  const placed = [];
  for (const mark of marks) {
    const { x, y } = cellOrigin(mark.slot);
    const width = ctx.measureText(mark.label).width + 10;
    const height = 17;
    const left = x + 17 + width <= size ? x + 17 : x - 15 - width;
    let top = Math.min(Math.max(y + CELL / 2 - height / 2, 0), size - height);
    for (let tries = 0; tries < 8 && placed.some((p) => overlaps(p, left, top, width, height)); tries++) {
      top = Math.min(top + height + 2, size - height);
    }
    placed.push({ left, top, width, height });
    ctx.fillStyle = "rgba(255, 255, 255, 0.94)";
    ctx.strokeStyle = mark.stuck ? MARKER_COLOURS.stuck : MARKER_COLOURS.open;
    ctx.lineWidth = 1;
    roundedRect(ctx, left + 0.5, top + 0.5, width, height, 4);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#111827";
    ctx.fillText(mark.label, left + 5.5, top + height / 2 + 1);
  }
}

function overlaps(p, left, top, width, height) {
  return left < p.left + p.width && p.left < left + width && top < p.top + p.height && p.top < top + height;
}

function roundedRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

// A readable axis maximum at or above value: four grid steps of 1, 2, 2.5 or 5 times a power
// of ten (0, 100, 200, 300, 400 rather than 0, 125, 250, ...).
export function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const rawStep = value / 4;
  const power = 10 ** Math.floor(Math.log10(rawStep));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= rawStep) return 4 * step * power;
  }
  return 40 * power;
}

// series: [{ colour, points: [{ t (ms), v (number or null: a gap) }] }]; the x axis is the last
// windowMs up to now. format(value) writes the y-axis labels.
export function drawChart(canvas, series, { windowMs, now, format }) {
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 180;
  const ctx = prepareCanvas(canvas, width, height);
  const plot = { left: 46, top: 8, right: width - 8, bottom: height - 20 };
  ctx.clearRect(0, 0, width, height);
  const values = series.flatMap((s) => s.points.map((p) => p.v)).filter((v) => v != null);
  const max = niceCeiling(Math.max(0, ...values));
  drawAxes(ctx, plot, max, windowMs, format);
  const xOf = (t) => plot.right - ((now - t) / windowMs) * (plot.right - plot.left);
  const yOf = (v) => plot.bottom - (v / max) * (plot.bottom - plot.top);
  ctx.save();
  ctx.beginPath();
  ctx.rect(plot.left, plot.top - 2, plot.right - plot.left, plot.bottom - plot.top + 4);
  ctx.clip();
  for (const s of series) drawLine(ctx, s, xOf, yOf);
  ctx.restore();
}

function drawAxes(ctx, plot, max, windowMs, format) {
  ctx.font = AXIS_FONT;
  ctx.lineWidth = 1;
  ctx.fillStyle = "#6b7280";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(plot.bottom - (i / 4) * (plot.bottom - plot.top)) + 0.5;
    ctx.strokeStyle = i === 0 ? "#9ca3af" : "#e5e7eb";
    ctx.beginPath();
    ctx.moveTo(plot.left, y);
    ctx.lineTo(plot.right, y);
    ctx.stroke();
    ctx.fillText(format((i / 4) * max), plot.left - 6, y);
  }
  ctx.textBaseline = "top";
  const ticks = Math.round(windowMs / 30000);  // one label per 30 s
  for (let i = 0; i <= ticks; i++) {
    const x = plot.left + (i / ticks) * (plot.right - plot.left);
    const before = (ticks - i) * 30;
    ctx.textAlign = i === 0 ? "left" : i === ticks ? "right" : "center";
    ctx.fillText(before === 0 ? "now" : before % 60 === 0 ? `\u2212${before / 60} min` : `\u2212${before} s`,
      x, plot.bottom + 5);
  }
}

function drawLine(ctx, s, xOf, yOf) {
  ctx.strokeStyle = s.colour;
  ctx.lineWidth = 1.75;
  ctx.lineJoin = "round";
  ctx.beginPath();
  let drawing = false;
  for (const p of s.points) {
    if (p.v == null) {
      drawing = false;
      continue;
    }
    if (drawing) ctx.lineTo(xOf(p.t), yOf(p.v));
    else ctx.moveTo(xOf(p.t), yOf(p.v));
    drawing = true;
  }
  ctx.stroke();
}
