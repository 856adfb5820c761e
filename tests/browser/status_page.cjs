// Drives headless Chromium through ringcast's status page for tests/status_page.rs, with
// playwright-core (pinned by web/package-lock.json; found through NODE_PATH).
//
//   node status_page.cjs '{"page": "http://127.0.0.1:PORT/", "stream": "live/test",
//                          "token": "...", "play": true, "screenshot": "/tmp/x.png"}'
//
// Prints one JSON line per step ({"step": ..., ...}) and a last line {"ok": true} or
// {"ok": false, "error": ...}; the Rust test asserts on them. Every wait is bounded.
"use strict";

const { chromium } = require("playwright-core");

const options = JSON.parse(process.argv[2]);
const STEP_TIMEOUT = 20000;

function report(step, details) {
  console.log(JSON.stringify({ step, ...details }));
}

async function rowOf(page, stream) {
  const row = page.locator(`tr[data-key="${stream}"]`);
  // The publisher's codecs arrive with its first sequence headers, a moment after the row.
  await page.waitForFunction(
    ([key, playable]) => {
      const row = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
      return row && row.querySelector("td.video").textContent.includes("x") &&
        (!playable || !row.querySelector("button.play").disabled);
    },
    [stream, Boolean(options.play)],
    { timeout: STEP_TIMEOUT },
  );
  const cells = await row.locator("td").allTextContents();
  const [key, publisher, video, audio, bitrate, players, uptime] = cells;
  return { key, publisher, video, audio, bitrate, players, uptime };
}

// Pixel statistics of a PNG screenshot, decoded by the browser itself.
async function pixelStats(page, png) {
  return page.evaluate(async (base64) => {
    const image = new Image();
    image.src = "data:image/png;base64," + base64;
    await image.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [image.width, image.height];
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const { data } = context.getImageData(0, 0, image.width, image.height);
    let sum = 0, sumSquares = 0, n = 0;
    for (let i = 0; i < data.length; i += 4) {
      const luma = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      sum += luma;
      sumSquares += luma * luma;
      n++;
    }
    const mean = sum / n;
    return { width: image.width, height: image.height, mean, variance: sumSquares / n - mean * mean };
  }, png.toString("base64"));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: options.chromium || "/usr/bin/chromium",
    headless: true,
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(options.page, { timeout: STEP_TIMEOUT });

    if (options.token) {
      // The page finds the API wants a token and asks for it.
      await page.locator("#token-form").waitFor({ state: "visible", timeout: STEP_TIMEOUT });
      report("asked_for_token", { status: await page.locator("#status").textContent() });
      await page.fill("#token", options.token);
      await page.click("#token-form button[type=submit]");
    }
    await page.locator("#main").waitFor({ state: "visible", timeout: STEP_TIMEOUT });
    report("listed", await rowOf(page, options.stream));

    if (options.token) {
      // A link with #token=... works in a fresh tab, and the fragment leaves the address bar.
      const other = await browser.newPage();
      await other.goto(options.page + "#token=" + encodeURIComponent(options.token), { timeout: STEP_TIMEOUT });
      await other.locator("#main").waitFor({ state: "visible", timeout: STEP_TIMEOUT });
      const row = await rowOf(other, options.stream);
      report("fragment_token", { url: other.url(), key: row.key });
      await other.close();
    }

    if (options.play) {
      await page.click(`tr[data-key="${options.stream}"] button.play`);
      report("play_clicked", { url: await page.locator("#player-url").textContent() });
      const start = await page.waitForFunction(
        () => {
          const video = document.getElementById("player");
          return video.currentTime > 0.5 && video.videoWidth > 0 && { t: video.currentTime, w: video.videoWidth, h: video.videoHeight };
        },
        null,
        { timeout: STEP_TIMEOUT },
      ).then((handle) => handle.jsonValue());
      await page.waitForTimeout(2000);
      const later = await page.evaluate(() => document.getElementById("player").currentTime);
      report("playing", { first: start.t, later, width: start.w, height: start.h });
      const png = await page.locator("#player").screenshot({ timeout: STEP_TIMEOUT });
      if (options.screenshot) {
        require("fs").writeFileSync(options.screenshot, png);
        await page.screenshot({ path: options.screenshot.replace(/\.png$/, "-page.png"), timeout: STEP_TIMEOUT });
      }
      report("screenshot", await pixelStats(page, png));
      // The page's players count shows this browser as an HTTP-FLV player.
      await page.waitForFunction(
        (key) => document.querySelector(`tr[data-key="${CSS.escape(key)}"] td.players`).textContent.includes("http-flv 1"),
        options.stream,
        { timeout: STEP_TIMEOUT },
      );
      report("counted", { players: await page.locator(`tr[data-key="${options.stream}"] td.players`).textContent() });
      const playerError = await page.locator("#player-error").textContent();
      if (playerError) report("player_error", { error: playerError });
    }
    report("page_errors", { errors });
    console.log(JSON.stringify({ ok: true }));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.log(JSON.stringify({ ok: false, error: String(error && error.stack || error) }));
  process.exit(1);
});
