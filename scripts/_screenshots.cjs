// Screenshots of the integration in the real Home Assistant frontend (run by
// scripts/screenshots, which starts scripts/develop and installs what this needs).
//
//   node scripts/_screenshots.cjs
//
// Environment: HA_URL (the running scripts/develop), EMULATOR_URL, WORKSPACE_KEY,
// OUT_DIR (where the PNGs go), FAILED_SHOT (the page when a step failed), PLAYWRIGHT_DIR (the folder whose node_modules holds
// playwright-core), CHROMIUM (the browser to drive, headless).
//
// Logs in as dev / dev through the auth API and hands the tokens to the frontend, then
// takes each screen in turn: the config flow's form (Add integration -> ItanniX
// Realtime, filled in and submitted through the UI), the device page, the options,
// the ItanniX Assist pipeline, a typed Assist conversation that turns on the kitchen
// light, and the device trigger "Assistant called a function" in the automation
// editor. Every wait is bounded; prints one line per screen and exits non-zero at the
// first that fails.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const HA_URL = need("HA_URL");
const EMULATOR_URL = need("EMULATOR_URL");
const WORKSPACE_KEY = need("WORKSPACE_KEY");
const OUT_DIR = need("OUT_DIR");
const { chromium } = createRequire(path.join(need("PLAYWRIGHT_DIR"), "package.json"))(
  "playwright-core",
);

const CLIENT_ID = `${HA_URL}/`;
const VIEWPORT = { width: 1280, height: 800 };
// One UI step (a click, a field, a dialog): the frontend answers in well under this.
const STEP_MS = 30_000;
// A request to Home Assistant's REST or websocket API.
const REQUEST_MS = 30_000;
const LIGHT = "light.kitchen_light";
const AGENT = "conversation.itannix_assistant";

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function log(text) {
  process.stdout.write(`screenshots: ${text}\n`);
}

async function request(method, url, { token, json, form } = {}) {
  const headers = {};
  let body;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  const resp = await fetch(`${HA_URL}${url}`, {
    method,
    headers,
    body,
    signal: AbortSignal.timeout(REQUEST_MS),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${url}: HTTP ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// The login the frontend would do, as dev / dev.
async function login() {
  const flow = await request("POST", "/auth/login_flow", {
    json: {
      client_id: CLIENT_ID,
      handler: ["homeassistant", null],
      redirect_uri: `${CLIENT_ID}?auth_callback=1`,
    },
  });
  const result = await request("POST", `/auth/login_flow/${flow.flow_id}`, {
    json: { client_id: CLIENT_ID, username: "dev", password: "dev" },
  });
  if (result.type !== "create_entry") throw new Error("login as dev / dev refused");
  return request("POST", "/auth/token", {
    form: {
      grant_type: "authorization_code",
      code: result.result,
      client_id: CLIENT_ID,
    },
  });
}

// A websocket command on the frontend's own connection (the page has loaded it).
async function callWS(page, message) {
  return page.evaluate(
    (msg) => document.querySelector("home-assistant").hass.callWS(msg),
    message,
  );
}

async function waitFor(what, probe, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

class Shots {
  constructor(page) {
    this.page = page;
    this.taken = [];
  }

  // Let animations and late renders settle, then take the viewport.
  async take(name, what) {
    await this.page.waitForTimeout(1500);
    const file = path.join(OUT_DIR, `${name}.png`);
    await this.page.screenshot({ path: file, animations: "disabled" });
    this.taken.push(file);
    log(`${name}.png: ${what}`);
  }
}

async function configFlow(page, shots) {
  await page.goto(`${HA_URL}/config/integrations/dashboard`);
  await page.getByRole("button", { name: /add integration/i }).waitFor();
  // Home Assistant run as `hass` (a "Core" installation) raises a repair about that
  // installation method; it is not the integration's, so it stays out of the pictures.
  await callWS(page, {
    type: "repairs/ignore_issue",
    domain: "homeassistant",
    issue_id: "deprecated_method",
    ignore: true,
  }).catch(() => {});
  await page.reload();
  await page.getByRole("button", { name: /add integration/i }).click();
  await page.getByPlaceholder(/search for a brand name/i).fill("ItanniX");
  await page.getByText("ItanniX Realtime", { exact: true }).first().click();
  // The form's fields are inputs named after the flow's fields (in shadow roots, which
  // playwright's CSS locators enter).
  await page.locator('input[name="workspace_key"]').fill(WORKSPACE_KEY);
  await page.locator('input[name="base_url"]').fill(EMULATOR_URL);
  await shots.take("setup", "the config flow's form");
  await page.getByRole("button", { name: /^submit$/i }).click();
  // The entry exists: Home Assistant offers to name the device and give it an area.
  await page.getByRole("button", { name: /skip and finish|finish/i }).first().click();
}

async function devicePage(page, shots) {
  const devices = await callWS(page, { type: "config/device_registry/list" });
  const device = devices.find((d) => d.identifiers.some(([domain]) => domain === "itannix"));
  if (!device) throw new Error("no ItanniX device");
  await page.goto(`${HA_URL}/config/devices/device/${device.id}`);
  await page.getByText("Function call").first().waitFor();
  await shots.take("device", "the ItanniX device and its entities");
  return device;
}

async function options(page, shots) {
  await page.goto(`${HA_URL}/config/integrations/integration/itannix`);
  await page.getByRole("button", { name: /configure/i }).first().click();
  // The workspace's voices, as the picker lists them.
  await page.getByText(/voice for other text/i).first().click();
  await page.getByText("Alloy", { exact: true }).first().waitFor(); // the emulator's
  await shots.take("options", "the options, with the voice picker");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Escape");
}

async function pipeline(page, shots) {
  await page.goto(`${HA_URL}/config/voice-assistants/assistants`);
  await page.getByText("ItanniX", { exact: true }).first().click();
  const agent = page.getByText("Conversation agent", { exact: true }).first();
  await agent.waitFor();
  await agent.evaluate((el) => el.scrollIntoView({ block: "start" }));
  await shots.take("pipeline", "the ItanniX Assist pipeline");
  await page.keyboard.press("Escape");
}

async function conversation(page, shots, token) {
  // The Assist dialog opens on the preferred assistant.
  const pipelines = await callWS(page, { type: "assist_pipeline/pipeline/list" });
  const itannix = pipelines.pipelines.find((p) => p.conversation_engine === AGENT);
  if (!itannix) throw new Error("no Assist pipeline with the ItanniX agent");
  await callWS(page, {
    type: "assist_pipeline/pipeline/set_preferred",
    pipeline_id: itannix.id,
  });
  const before = await request("GET", `/api/states/${LIGHT}`, { token });
  if (before.state !== "off") throw new Error(`${LIGHT} is ${before.state} before the turn`);
  await page.goto(`${HA_URL}/lovelace/0`);
  // "Assist (A)": not "Add to Home Assistant".
  await page.getByRole("button", { name: /^Assist\b/ }).click();
  // The dialog's request field has the focus.
  await page.getByText("How can I assist?").first().waitFor();
  await page.keyboard.type("turn on the kitchen light");
  await page.keyboard.press("Enter");
  const reply = page.getByText("The kitchen light is on.").last();
  await reply.waitFor();
  await waitFor(`${LIGHT} to turn on`, async () => {
    const state = await request("GET", `/api/states/${LIGHT}`, { token });
    return state.state === "on";
  });
  // The tool call Home Assistant ran, and its result, above the reply.
  await page.getByText("Show details").last().click();
  await page.getByText(/HassTurnOn/).first().waitFor();
  await reply.evaluate((el) => el.scrollIntoView({ block: "end" }));
  await shots.take("assist", "a typed Assist conversation that turned on the kitchen light");
  await page.keyboard.press("Escape");
}

async function deviceTrigger(page, shots, token, device) {
  // A real automation with the device trigger, opened in the editor.
  const id = "itannix_screenshot_trigger";
  await request("POST", `/api/config/automation/config/${id}`, {
    token,
    json: {
      alias: "Open the garage when the assistant asks",
      description: "",
      triggers: [
        {
          trigger: "device",
          domain: "itannix",
          device_id: device.id,
          type: "function_called",
          function: "open_garage",
        },
      ],
      conditions: [],
      actions: [
        {
          action: "itannix.function_call_response",
          data: {
            call_id: "{{ trigger.event.data.call_id }}",
            response: { result: "The garage is opening." },
          },
        },
      ],
      mode: "single",
    },
  });
  await page.goto(`${HA_URL}/config/automation/edit/${id}`);
  await page.getByText(/assistant called a function/i).first().waitFor();
  await shots.take("device-trigger", 'the device trigger "Assistant called a function"');
}

async function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const tokens = await login();
  const token = tokens.access_token;
  const browser = await chromium.launch({
    executablePath: need("CHROMIUM"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: STEP_MS,
  });
  try {
    const context = await browser.newContext({
      viewport: VIEWPORT,
      colorScheme: "light",
      locale: "en-US",
    });
    // The frontend keeps its login here (as after logging in on /auth).
    const stored = {
      ...tokens,
      hassUrl: HA_URL,
      clientId: CLIENT_ID,
      expires: Date.now() + tokens.expires_in * 1000,
    };
    await context.addInitScript((value) => {
      window.localStorage.setItem("hassTokens", value);
    }, JSON.stringify(stored));
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.setDefaultNavigationTimeout(STEP_MS * 2);
    const shots = new Shots(page);
    const steps = [
      ["the config flow", () => configFlow(page, shots)],
      ["the device page", async () => (shots.device = await devicePage(page, shots))],
      ["the options", () => options(page, shots)],
      ["the pipeline", () => pipeline(page, shots)],
      ["the conversation", () => conversation(page, shots, token)],
      ["the device trigger", () => deviceTrigger(page, shots, token, shots.device)],
    ];
    for (const [what, run] of steps) {
      try {
        await run();
      } catch (err) {
        const file = need("FAILED_SHOT");
        await page.screenshot({ path: file }).catch(() => {});
        throw new Error(`${what}: ${err.message.split("\n")[0]} (the page: ${file})`);
      }
    }
    return shots.taken.length;
  } finally {
    await browser.close();
  }
}

main().then(
  (count) => {
    process.stdout.write(`${count}\n`);
  },
  (err) => {
    process.stderr.write(`screenshots: FAILED: ${err.message}\n`);
    process.exit(1);
  },
);
