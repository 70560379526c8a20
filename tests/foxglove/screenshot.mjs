// Screenshots a web page in headless chromium after it has run for a while, for
// tests/foxglove.rs (Foxglove Studio plotting live `botbus foxglove` data):
//
//   node screenshot.mjs URL OUT.png [--wait-seconds N] [--size WIDTHxHEIGHT]
//
// Starts `chromium` ($CHROMIUM overrides it) headless with a throwaway profile, attaches
// to its page over the Chrome DevTools Protocol (with the `ws` package), loads URL there,
// waits until it has loaded and then N seconds of real time more (default 8) so live data
// accumulates, writes a PNG of the viewport (default 1280x800) to OUT.png, and stops
// chromium. The page's console errors and uncaught exceptions go to stderr as they come;
// one line on stdout says what was written. Exits 0 when the screenshot was written, 1 on
// failure (also after a hard timeout of N + 60 s), 2 on a usage error.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";

const usage = "usage: node screenshot.mjs URL OUT.png [--wait-seconds N] [--size 1280x800]";

function parseArgs(argv) {
  const opts = { waitSeconds: 8, width: 1280, height: 800 };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--wait-seconds") {
      opts.waitSeconds = Number(argv[++i]);
      if (!Number.isFinite(opts.waitSeconds) || opts.waitSeconds < 0) throw new Error(usage);
    } else if (a === "--size") {
      const m = /^(\d+)x(\d+)$/.exec(argv[++i] ?? "");
      if (!m) throw new Error(usage);
      opts.width = Number(m[1]);
      opts.height = Number(m[2]);
    } else if (a.startsWith("--")) {
      throw new Error(`unknown option ${a}\n${usage}`);
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) throw new Error(usage);
  [opts.url, opts.out] = positional;
  return opts;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let chrome; // the chromium child process (its own children end with it)
let chromeExited; // resolves when it has
let profile; // its --user-data-dir
let stopping = false; // once set, chromium's exit is expected

/** Kills chromium, waits (up to 5 s) until it is gone, and removes its profile. */
async function stopChromium() {
  stopping = true;
  if (chrome?.pid !== undefined && chrome.exitCode === null && chrome.signalCode === null) {
    chrome.kill("SIGKILL");
    await Promise.race([chromeExited, sleep(5000)]);
  }
  if (profile) {
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    profile = undefined;
  }
}

function fail(message) {
  if (stopping) return;
  process.stderr.write(`screenshot.mjs: ${message}\n`);
  stopChromium().finally(() => process.exit(1));
}

/** Starts chromium; resolves to the host:port of its DevTools endpoint. */
function startChromium(opts) {
  const program = process.env.CHROMIUM || "chromium";
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "botbus-chromium-"));
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    `--window-size=${opts.width},${opts.height}`,
    "about:blank",
  ];
  chrome = spawn(program, args, { stdio: ["ignore", "ignore", "pipe"] });
  chromeExited = new Promise((resolve) => chrome.once("exit", resolve));
  return new Promise((resolve, reject) => {
    let stderr = "";
    let listening = false;
    chrome.on("error", (e) => reject(new Error(`cannot run ${program}: ${e.message}`)));
    chrome.on("exit", (code, signal) => {
      if (!listening) {
        reject(new Error(`${program} exited (${signal ?? code}) before DevTools listened:\n${stderr}`));
      } else {
        fail(`${program} exited (${signal ?? code}) before the screenshot`);
      }
    });
    chrome.stderr.setEncoding("utf8");
    chrome.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /DevTools listening on ws:\/\/([^/\s]+)\//.exec(stderr);
      if (m && !listening) {
        listening = true;
        resolve(m[1]);
      }
    });
  });
}

/** The DevTools WebSocket URL of the (blank) page chromium opened. */
async function pageTarget(hostPort) {
  const end = Date.now() + 15000;
  let last = "no answer";
  while (Date.now() < end) {
    try {
      const res = await fetch(`http://${hostPort}/json/list`);
      const targets = await res.json();
      const page = targets.find((t) => t.type === "page");
      if (page?.webSocketDebuggerUrl) return page.webSocketDebuggerUrl;
      last = JSON.stringify(targets);
    } catch (e) {
      last = e.message;
    }
    await sleep(100);
  }
  throw new Error(`no page target at http://${hostPort}/json/list: ${last}`);
}

/** A minimal CDP session: send(method, params) → result; events to onEvent. */
async function connect(wsUrl, onEvent) {
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false, maxPayload: 512 * 1024 * 1024 });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let nextId = 1;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (!p) return;
      if (msg.error) p.reject(new Error(`${p.method}: ${JSON.stringify(msg.error)}`));
      else p.resolve(msg.result);
    } else {
      onEvent(msg.method, msg.params);
    }
  });
  ws.on("close", () => {
    for (const p of pending.values()) p.reject(new Error(`${p.method}: DevTools connection closed`));
    pending.clear();
  });
  return {
    send(method, params = {}) {
      const id = nextId++;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve, reject) => pending.set(id, { method, resolve, reject }));
    },
    close() {
      ws.close();
    },
  };
}

/** A console argument as text: strings as they are, objects by their preview. */
function describeRemote(arg) {
  if (arg.type === "string") return arg.value;
  if (arg.value !== undefined) return JSON.stringify(arg.value);
  const props = arg.preview?.properties;
  if (props && arg.subtype !== "error") {
    const fields = props.map((p) => {
      const value = p.value ?? p.valuePreview?.description ?? p.type;
      return `${p.name}: ${value.split("\n")[0]}`; // an error's message, not its stack
    });
    return `{${fields.join(", ")}${arg.preview.overflow ? ", ..." : ""}}`;
  }
  return (arg.description ?? arg.type).split("\n")[0];
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  const hardTimeout = (opts.waitSeconds + 60) * 1000;
  setTimeout(() => fail(`gave up after ${hardTimeout / 1000} s`), hardTimeout).unref();
  process.on("SIGINT", () => fail("interrupted"));
  process.on("SIGTERM", () => fail("terminated"));

  const hostPort = await startChromium(opts);
  const wsUrl = await pageTarget(hostPort);
  let errors = 0;
  const error = (text) => {
    errors++;
    process.stderr.write(`screenshot.mjs: page ${text}\n`);
  };
  let loaded;
  const load = new Promise((resolve) => (loaded = resolve));
  const cdp = await connect(wsUrl, (method, params) => {
    if (method === "Page.loadEventFired") loaded();
    else if (method === "Runtime.consoleAPICalled" && (params.type === "error" || params.type === "assert")) {
      error(`console.${params.type}: ${params.args.map(describeRemote).join(" ")}`);
    } else if (method === "Runtime.exceptionThrown") {
      const d = params.exceptionDetails;
      const what = (d.exception?.description ?? d.text).split("\n")[0];
      error(`uncaught: ${what} (${d.url ?? "?"}:${d.lineNumber + 1})`);
    }
  });
  // Listening before the page loads, so no early error is missed.
  await cdp.send("Runtime.enable");
  await cdp.send("Page.enable");
  await cdp.send("Emulation.setDeviceMetricsOverride", {
    width: opts.width,
    height: opts.height,
    deviceScaleFactor: 1,
    mobile: false,
  });
  const nav = await cdp.send("Page.navigate", { url: opts.url });
  if (nav.errorText) throw new Error(`cannot load ${opts.url}: ${nav.errorText}`);
  const started = Date.now();
  await load;
  const loadSeconds = (Date.now() - started) / 1000;
  await sleep(opts.waitSeconds * 1000);
  const shot = await cdp.send("Page.captureScreenshot", { format: "png" });
  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  fs.writeFileSync(opts.out, Buffer.from(shot.data, "base64"));
  cdp.close();
  await stopChromium();
  process.stdout.write(
    `screenshot.mjs: wrote ${opts.out} (${opts.width}x${opts.height}) of ${opts.url} after ` +
      `loading (${loadSeconds.toFixed(1)} s) and ${opts.waitSeconds} s more; ` +
      `${errors} console error(s)\n`,
  );
  process.exit(0);
}

main().catch((e) => fail(e.message || String(e)));
