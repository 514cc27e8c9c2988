// Drags the first orbit of a render job's gallery in headless Chromium and prints which frame it shows
// before and after (a 60 px drag to the right in 5 px moves: frame 0 -> 18 of a 24-view orbit, seen here).
//
//   node --experimental-websocket bench/gallery_drag.mjs file:///abs/path/to/out/index.html
//
// Needs Debian's chromium (.ci/run installs it) and Node 20+ (22+ without the flag). tests/jobs_test.py
// checks that the gallery loads every image; this checks the drag-to-rotate script by hand.
import { spawn } from 'node:child_process';
const page = process.argv[2];
const chrome = spawn('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--user-data-dir=/tmp/head360-gallery-drag', '--remote-debugging-port=9333', '--window-size=1000,900', page]);
await new Promise(r => setTimeout(r, 3000));
const targets = await (await fetch('http://127.0.0.1:9333/json')).json();
const ws = new WebSocket(targets.find(t => t.type === 'page').webSocketDebuggerUrl);
await new Promise(r => ws.addEventListener('open', r));
let id = 0; const pending = new Map();
ws.addEventListener('message', e => { const m = JSON.parse(e.data); if (pending.has(m.id)) { pending.get(m.id)(m.result); pending.delete(m.id); } });
const send = (method, params = {}) => new Promise(r => { pending.set(++id, r); ws.send(JSON.stringify({ id, method, params })); });
const evaluate = async expr => (await send('Runtime.evaluate', { expression: expr, returnByValue: true })).result.value;
const box = await evaluate(`(() => { const r = document.querySelector('img.orbit').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`);
const before = await evaluate(`document.querySelector('img.orbit').getAttribute('src')`);
await send('Input.dispatchMouseEvent', { type: 'mousePressed', x: box[0], y: box[1], button: 'left', clickCount: 1 });
for (let dx = 5; dx <= 60; dx += 5) await send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: box[0] + dx, y: box[1], button: 'left', buttons: 1 });
await send('Input.dispatchMouseEvent', { type: 'mouseReleased', x: box[0] + 60, y: box[1], button: 'left', clickCount: 1 });
const after = await evaluate(`document.querySelector('img.orbit').getAttribute('src')`);
console.log(JSON.stringify({ before, after }));
ws.close(); chrome.kill();
