// The web console in headless Chromium against a real broker: a STOMP
// producer fills a queue, then the page must show it, send a message from
// its form, browse it, purge the queue to depth 0 (and its stored bytes, on
// the table and the page, to 0) and close the producer's
// connection (which must receive an ERROR frame), with no console errors.
// Run by console-in-chromium.sh, which starts the broker and passes
// FERROMQ_ADMIN_URL and FERROMQ_STOMP (host:port).
import { chromium } from "playwright-core";
import net from "node:net";

const admin = process.env.FERROMQ_ADMIN_URL;
const [stompHost, stompPort] = (process.env.FERROMQ_STOMP || "").split(":");
const queue = "/queue/console.orders";
const results = [];
const check = (name, ok, detail = "") => {
  results.push({ name, ok });
  console.log(`${ok ? "ok    " : "FAILED"} ${name}${detail ? ": " + detail : ""}`);
};

// A raw STOMP producer that stays connected; collects what it receives.
function stompProducer() {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(stompPort), stompHost);
    let received = "";
    let closed = false;
    socket.on("data", d => { received += d.toString("utf8"); });
    socket.on("close", () => { closed = true; });
    socket.on("error", reject);
    const frame = (cmd, headers, body = "") =>
      cmd + "\n" + Object.entries(headers).map(([k, v]) => `${k}:${v}`).join("\n") + "\n\n" + body + "\0";
    socket.on("connect", () => {
      socket.write(frame("CONNECT", { "accept-version": "1.2", host: "localhost" }));
      for (let i = 1; i <= 3; i++) {
        socket.write(frame("SEND", { destination: queue, receipt: `r${i}`, persistent: "true" }, `order ${i}`));
      }
      const started = Date.now();
      const wait = () => {
        if (received.includes("receipt-id:r3")) resolve({ socket, received: () => received, closed: () => closed });
        else if (Date.now() - started > 10000) reject(new Error("no RECEIPT from the broker: " + received));
        else setTimeout(wait, 20);
      };
      wait();
    });
  });
}

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise(r => setTimeout(r, 100));
  }
}

const producer = await stompProducer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", e => errors.push(String(e)));
  page.on("dialog", d => d.accept());

  await page.goto(admin + "/#/");
  await page.waitForSelector("#card-destinations .v");
  check("overview shows the rate charts", await page.locator("#rates-chart").count() === 1);

  await page.goto(admin + "/#/destinations");
  const row = page.locator(`tr[data-name="${queue}"]`);
  await row.waitFor({ timeout: 10000 });
  check("the STOMP producer's queue is listed with depth 3",
    (await row.locator("td.depth").textContent()) === "3", await row.locator("td.depth").textContent());
  const listed = await (await fetch(admin + "/api/destinations/queue/console.orders")).json();
  const storedText = await row.locator("td.store-bytes").textContent();
  check("the table shows the queue's stored bytes", listed.store_bytes > 0 && storedText === `${listed.store_bytes} B`,
    `${storedText} for ${listed.store_bytes}`);

  await row.locator("a").click();
  await page.waitForSelector("#depth .v");
  await page.fill("#send-body", "sent from the console");
  await page.fill("#send-headers", "color=blue");
  await page.click("#send-button");
  await until("the send to be confirmed", async () => (await page.textContent("#status")).startsWith("sent ID:"));
  check("a message is sent from the form", true);

  await page.click("#browse-button");
  await until("4 browsed messages", async () => (await page.locator("#messages-table tbody tr").count()) === 4);
  const browsed = await page.textContent("#messages-table");
  check("browse shows the producer's and the form's messages",
    browsed.includes("order 1") && browsed.includes("sent from the console") && browsed.includes("color: blue"));

  await page.click("#purge-button");
  await until("depth 0", async () => (await page.textContent("#depth .v")) === "0");
  await until("stored bytes 0", async () => (await page.textContent("#store-bytes .v")) === "0 B");
  check("purge empties the queue's stored bytes on its page", true);
  const api = await (await fetch(admin + "/api/destinations/queue/console.orders")).json();
  check("purge empties the queue", api.messages === 0, JSON.stringify(api.messages));

  await page.goto(admin + "/#/connections");
  const button = page.locator("button.close-conn");
  await button.first().waitFor({ timeout: 10000 });
  check("the producer's connection is listed", (await button.count()) === 1);
  await button.first().click();
  await until("the producer's connection to close", async () => producer.closed());
  check("closing sends the client an ERROR frame naming the reason",
    producer.received().includes("ERROR") && producer.received().includes("closed from the console"));
  await until("the connections table to empty", async () => (await page.locator("#conn-table tbody tr").count()) === 0);
  check("the closed connection leaves the table", true);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
} catch (e) {
  failed = true;
  console.log("FAILED " + e.message);
} finally {
  await browser.close();
  producer.socket.destroy();
}
check("no console errors", errors.length === 0, errors.join(" | "));
const bad = results.filter(r => !r.ok).length + (failed ? 1 : 0);
console.log(`${results.filter(r => r.ok).length} passed, ${bad} failed`);
process.exit(bad === 0 ? 0 : 1);
