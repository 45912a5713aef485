// @stomp/stompjs (v7, the STOMP client of browsers and Node) against a running
// ferromq over WebSocket. Starts nothing itself: tests/tests/stomp_js.rs
// starts the broker and runs
//
//   node stompjs_interop.mjs ws://127.0.0.1:PORT/ws [wss://localhost:PORT/ws CA.pem]
//
// Each check is a node:test test; any failure makes the exit status non-zero.
// Node 20 has no global WebSocket, so the `ws` package provides it.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [wsUrl, wssUrl, caFile] = process.argv.slice(2);
if (!wsUrl) {
  console.error('usage: node stompjs_interop.mjs WS_URL [WSS_URL CA_FILE]');
  process.exit(2);
}

/** How long to wait for something the broker should do promptly. */
const WAIT = 10_000;
/** How long "nothing arrives" is watched for. */
const QUIET = 500;

const open = new Set();
after(async () => {
  await Promise.all([...open].map((c) => c.deactivate()));
});

function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

async function within(ms, what, promise) {
  const t = timeout(ms, what);
  try {
    return await Promise.race([promise, t.promise]);
  } finally {
    t.cancel();
  }
}

/**
 * Connects a stompjs client to `url`; resolves once CONNECTED arrived.
 * `options.ws` goes to the ws constructor (e.g. `{ ca }` for wss), the rest
 * to the stompjs Client.
 */
async function connect(url, options = {}) {
  const { ws: wsOptions = {}, ...clientOptions } = options;
  let client;
  const connected = new Promise((resolve, reject) => {
    client = new Client({
      webSocketFactory: () =>
        new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp'], wsOptions),
      connectHeaders: { host: '/' },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      debug: (line) => {
        if (process.env.STOMPJS_DEBUG) console.error(line);
      },
      onConnect: (frame) => resolve(frame),
      onStompError: (frame) =>
        reject(new Error(`ERROR frame: ${frame.headers.message}: ${frame.body}`)),
      onWebSocketError: (event) =>
        reject(new Error(`WebSocket error: ${event.message ?? event.error ?? event}`)),
      onWebSocketClose: (event) =>
        reject(new Error(`WebSocket closed before CONNECTED (code ${event.code})`)),
      ...clientOptions,
    });
    client.activate();
  });
  open.add(client);
  const frame = await within(WAIT, `CONNECTED from ${url}`, connected);
  return { client, frame };
}

async function disconnect(client) {
  open.delete(client);
  await client.deactivate();
}

/** Messages of one subscription, awaited one at a time. */
class Inbox {
  constructor() {
    this.messages = [];
    this.waiters = [];
  }

  push = (message) => {
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.messages.push(message);
  };

  next(what = 'a MESSAGE') {
    if (this.messages.length > 0) return Promise.resolve(this.messages.shift());
    return within(WAIT, what, new Promise((resolve) => this.waiters.push(resolve)));
  }

  async expectNone(ms = QUIET) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    assert.deepEqual(
      this.messages.map((m) => m.body),
      [],
      'expected no message',
    );
  }
}

let receipts = 0;

/** Subscribes and waits for the RECEIPT; returns the subscription's inbox. */
async function subscribe(client, destination, headers = {}) {
  const inbox = new Inbox();
  const receipt = `sub-${++receipts}`;
  const got = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  client.subscribe(destination, inbox.push, { ...headers, receipt });
  const frame = await within(WAIT, `RECEIPT ${receipt}`, got);
  assert.equal(frame.headers['receipt-id'], receipt);
  return inbox;
}

/** Publishes with a receipt and waits for it. */
async function publish(client, params) {
  const receipt = `pub-${++receipts}`;
  const got = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  client.publish({ ...params, headers: { ...(params.headers ?? {}), receipt } });
  await within(WAIT, `RECEIPT ${receipt}`, got);
}

let destinations = 0;
const unique = (kind) => `/${kind}/stompjs.${process.pid}.${++destinations}`;

test('connect: STOMP 1.2 over the v12.stomp subprotocol', async () => {
  const { client, frame } = await connect(wsUrl);
  assert.equal(frame.headers.version, '1.2');
  assert.match(frame.headers.server, /^ferromq\//);
  assert.equal(client.webSocket.protocol, 'v12.stomp');
  await disconnect(client);
});

test('queue: subscribe with receipt, send and receive, headers kept', async () => {
  const { client } = await connect(wsUrl);
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);
  await publish(client, {
    destination: queue,
    body: 'héllo from stomp.js',
    headers: { 'x-app': 'interop', 'content-type': 'text/plain' },
  });
  const m = await inbox.next();
  assert.equal(m.body, 'héllo from stomp.js');
  assert.equal(m.headers.destination, queue);
  assert.equal(m.headers['x-app'], 'interop');
  assert.ok(m.headers['message-id'], 'MESSAGE without message-id');
  await disconnect(client);
});

test('queue: a binary body with NUL and non-UTF-8 bytes arrives intact', async () => {
  const { client } = await connect(wsUrl);
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);
  const body = new Uint8Array([0, 1, 2, 0xff, 0xfe, 0, 0x80, 10, 0]);
  await publish(client, { destination: queue, binaryBody: body });
  const m = await inbox.next();
  assert.deepEqual([...m.binaryBody], [...body]);
  await disconnect(client);
});

test('queue: frames sent as binary WebSocket messages work too', async () => {
  const { client } = await connect(wsUrl, { forceBinaryWSFrames: true });
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);
  await publish(client, { destination: queue, body: 'binary frames' });
  assert.equal((await inbox.next()).body, 'binary frames');
  await disconnect(client);
});

test('topic: every subscriber gets every message', async () => {
  const a = await connect(wsUrl);
  const b = await connect(wsUrl);
  const topic = unique('topic');
  const inboxA = await subscribe(a.client, topic);
  const inboxB = await subscribe(b.client, topic);
  for (const n of [1, 2, 3]) {
    await publish(a.client, { destination: topic, body: `tick ${n}` });
  }
  for (const inbox of [inboxA, inboxB]) {
    const bodies = [];
    for (let i = 0; i < 3; i++) bodies.push((await inbox.next()).body);
    assert.deepEqual(bodies, ['tick 1', 'tick 2', 'tick 3']);
  }
  await disconnect(a.client);
  await disconnect(b.client);
});

test('client-individual: ack settles, nack redelivers', async () => {
  const { client } = await connect(wsUrl);
  const queue = unique('queue');
  const inbox = await subscribe(client, queue, { ack: 'client-individual' });
  await publish(client, { destination: queue, body: 'first' });
  await publish(client, { destination: queue, body: 'second' });
  const first = await inbox.next();
  const second = await inbox.next();
  assert.deepEqual([first.body, second.body], ['first', 'second']);
  assert.ok(first.headers.ack, 'STOMP 1.2 MESSAGE without an ack header');
  first.nack();
  second.ack();
  const again = await inbox.next('the NACKed message, redelivered');
  assert.equal(again.body, 'first');
  assert.equal(again.headers.redelivered, 'true');
  again.ack();
  await inbox.expectNone();
  await disconnect(client);

  // Everything was acknowledged: a new consumer finds the queue empty.
  const later = await connect(wsUrl);
  const left = await subscribe(later.client, queue, { ack: 'client-individual' });
  await left.expectNone();
  await disconnect(later.client);
});

test('client-individual: unacked messages come back when the WebSocket closes', async () => {
  const first = await connect(wsUrl);
  const queue = unique('queue');
  const inbox = await subscribe(first.client, queue, { ack: 'client-individual' });
  await publish(first.client, { destination: queue, body: 'not acked' });
  assert.equal((await inbox.next()).body, 'not acked');
  // A WebSocket close, no DISCONNECT: what a closed browser tab does.
  const closed = new Promise((resolve) => {
    first.client.onWebSocketClose = resolve;
  });
  first.client.webSocket.close();
  await within(WAIT, 'the WebSocket close', closed);
  await disconnect(first.client);

  const second = await connect(wsUrl);
  const again = await subscribe(second.client, queue, { ack: 'client-individual' });
  const m = await again.next('the unacked message, redelivered');
  assert.equal(m.body, 'not acked');
  assert.equal(m.headers.redelivered, 'true');
  m.ack();
  await disconnect(second.client);
});

test('transaction: sends take effect on commit, not on abort', async () => {
  const { client } = await connect(wsUrl);
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);

  const aborted = client.begin();
  client.publish({ destination: queue, body: 'rolled back', headers: { transaction: aborted.id } });
  aborted.abort();

  const tx = client.begin();
  client.publish({ destination: queue, body: 'one', headers: { transaction: tx.id } });
  client.publish({ destination: queue, body: 'two', headers: { transaction: tx.id } });
  await inbox.expectNone();
  tx.commit();
  const bodies = [(await inbox.next()).body, (await inbox.next()).body];
  assert.deepEqual(bodies, ['one', 'two']);
  await inbox.expectNone();
  await disconnect(client);
});

test('heart-beats both ways keep an idle connection open', async () => {
  const { client } = await connect(wsUrl, { heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
  let closed = false;
  client.onWebSocketClose = () => {
    closed = true;
  };
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);
  // The broker drops a client silent for 2 x 1 s; stompjs drops a broker
  // silent for 2 x 1 s. 3.5 s idle shows both sides' heart-beats arrive.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  assert.equal(closed, false, 'the connection closed while idle');
  await publish(client, { destination: queue, body: 'still here' });
  assert.equal((await inbox.next()).body, 'still here');
  await disconnect(client);
});

test('wss: TLS with the test CA', { skip: !wssUrl && 'no wss URL given' }, async () => {
  const ca = readFileSync(caFile);
  const { client, frame } = await connect(wssUrl, { ws: { ca } });
  assert.equal(frame.headers.version, '1.2');
  assert.equal(client.webSocket.protocol, 'v12.stomp');
  const queue = unique('queue');
  const inbox = await subscribe(client, queue);
  await publish(client, { destination: queue, body: 'over wss' });
  assert.equal((await inbox.next()).body, 'over wss');
  await disconnect(client);

  // A client that does not trust the CA cannot connect.
  await assert.rejects(connect(wssUrl), /WebSocket error|self-signed|certificate/i);
});
