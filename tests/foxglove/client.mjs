// Foxglove WebSocket test peer for tests/foxglove.rs.
//
// Connects to a `botbus foxglove` server with the real @foxglove/ws-protocol
// FoxgloveClient (over the `ws` package), using a caller-chosen subprotocol
// name (foxglove.websocket.v1 or foxglove.sdk.v1), and prints one JSON object
// per line on stdout for every event, so the Rust test can assert on it.
//
// Setup:  cd tests/foxglove && npm ci
// Usage:  node client.mjs URL SUBPROTOCOL [--subscribe TOPIC]... [--seconds N]
//
// Output lines (one JSON object each):
//   {"event":"open","protocol":<negotiated subprotocol>}
//   {"event":"serverInfo", ...serverInfo fields without "op"}
//   {"event":"status", ...status fields without "op"}
//   {"event":"advertise","channels":[{id,topic,encoding,schemaName,schema,schemaEncoding}]}
//   {"event":"unadvertise","channelIds":[...]}
//   {"event":"subscribe","topic":...,"channelId":...,"subscriptionId":...}
//   {"event":"message","topic":...,"channelId":...,"subscriptionId":...,
//    "timestamp":"<u64 ns as string>","data":<payload UTF-8 decoded, JSON.parse'd>}
//     (if the payload is not JSON: "data":null,"text":<raw UTF-8>,"parseError":...)
//   {"event":"error","message":...}
//   {"event":"close","code":...,"reason":...}
//
// Whenever a channel whose topic is one of the --subscribe topics is advertised
// (including a re-advertisement under a new id), the client subscribes to it.
// Exits 0 after --seconds (default 10) or when the socket closes after having
// opened; exits 1 if the connection could not be established; exits 2 on bad usage.
//
// Note: FoxgloveClient only advertises "foxglove.websocket.v1" itself
// (FoxgloveClient.SUPPORTED_SUBPROTOCOL) when you let the app build the socket,
// but it never checks ws.protocol, so we pass our own socket opened with the
// subprotocol under test.

import { createRequire } from "node:module";
import WebSocket from "ws";

// The package is CommonJS and Node's ESM named-export detection misses
// FoxgloveClient, so load it through require.
const require = createRequire(import.meta.url);
const { FoxgloveClient } = require("@foxglove/ws-protocol");

function usage(msg) {
  if (msg) process.stderr.write(`client.mjs: ${msg}\n`);
  process.stderr.write(
    "usage: node client.mjs URL SUBPROTOCOL [--subscribe TOPIC]... [--seconds N]\n",
  );
  process.exit(2);
}

const positional = [];
const subscribeTopics = new Set();
let seconds = 10;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--subscribe") {
    if (i + 1 >= argv.length) usage("--subscribe needs a TOPIC");
    subscribeTopics.add(argv[++i]);
  } else if (a === "--seconds") {
    if (i + 1 >= argv.length) usage("--seconds needs N");
    seconds = Number(argv[++i]);
    if (!Number.isFinite(seconds) || seconds < 0) usage(`bad --seconds: ${argv[i]}`);
  } else if (a === "-h" || a === "--help") {
    usage();
  } else {
    positional.push(a);
  }
}
if (positional.length !== 2) usage("expected URL and SUBPROTOCOL");
const [url, subprotocol] = positional;

// stdout writes to pipes/files are synchronous on Linux, so each line is
// flushed as soon as it is written.
function emit(obj) {
  process.stdout.write(
    JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n",
  );
}

let opened = false;
let exiting = false;
function finish(code) {
  if (exiting) return;
  exiting = true;
  process.stdout.write("", () => process.exit(code));
}

const decoder = new TextDecoder("utf-8");
const channelsById = new Map(); // channelId -> Channel
const subsByChannel = new Map(); // channelId -> subscriptionId
const subsById = new Map(); // subscriptionId -> { channelId, topic }

let ws;
try {
  ws = new WebSocket(url, [subprotocol]);
} catch (err) {
  emit({ event: "error", message: String(err?.message ?? err) });
  finish(1);
}

if (ws) {
  const client = new FoxgloveClient({ ws });

  client.on("open", () => {
    opened = true;
    emit({ event: "open", protocol: ws.protocol });
  });

  client.on("serverInfo", (info) => {
    const { op: _op, ...fields } = info;
    emit({ event: "serverInfo", ...fields });
  });

  client.on("status", (status) => {
    const { op: _op, ...fields } = status;
    emit({ event: "status", ...fields });
  });

  client.on("advertise", (channels) => {
    emit({ event: "advertise", channels });
    for (const ch of channels) {
      channelsById.set(ch.id, ch);
      if (subscribeTopics.has(ch.topic) && !subsByChannel.has(ch.id)) {
        const subscriptionId = client.subscribe(ch.id);
        subsByChannel.set(ch.id, subscriptionId);
        subsById.set(subscriptionId, { channelId: ch.id, topic: ch.topic });
        emit({ event: "subscribe", topic: ch.topic, channelId: ch.id, subscriptionId });
      }
    }
  });

  client.on("unadvertise", (channelIds) => {
    emit({ event: "unadvertise", channelIds });
    for (const id of channelIds) {
      channelsById.delete(id);
      // The server drops subscriptions to removed channels; forget ours so a
      // re-advertisement (even with the same id) is subscribed again.
      const subscriptionId = subsByChannel.get(id);
      if (subscriptionId !== undefined) {
        subsByChannel.delete(id);
        subsById.delete(subscriptionId);
      }
    }
  });

  client.on("message", (msg) => {
    const sub = subsById.get(msg.subscriptionId);
    const bytes = new Uint8Array(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
    const text = decoder.decode(bytes);
    const out = {
      event: "message",
      topic: sub?.topic ?? null,
      channelId: sub?.channelId ?? null,
      subscriptionId: msg.subscriptionId,
      timestamp: msg.timestamp.toString(),
    };
    try {
      out.data = JSON.parse(text);
    } catch (err) {
      out.data = null;
      out.text = text;
      out.parseError = String(err?.message ?? err);
    }
    emit(out);
  });

  client.on("error", (err) => {
    emit({ event: "error", message: String(err?.message ?? err) });
  });

  client.on("close", (ev) => {
    emit({ event: "close", code: ev?.code ?? null, reason: ev?.reason ?? "" });
    finish(opened ? 0 : 1);
  });

  setTimeout(() => {
    if (!opened) {
      emit({ event: "error", message: `not connected after ${seconds}s` });
      finish(1);
      return;
    }
    // Close politely (1000, which FoxgloveClient.close() would not send);
    // if the close handshake stalls, exit anyway.
    ws.close(1000, "client done");
    setTimeout(() => finish(0), 1000);
  }, seconds * 1000);
}
