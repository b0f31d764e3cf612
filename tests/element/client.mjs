// One simulated Element user (matrix-js-sdk with the Rust matrix-sdk-crypto, as Element Web/Desktop uses it),
// driven by JSON lines on stdin and answering with JSON lines on stdout. Everything else goes to stderr.
//
// A command is {id, cmd, timeout?, ...arguments}; its answer is {id, ok: true, ...} or {id, ok: false, error}.
// Streamed lines carry "event" instead of "id": {event: "message", room_id, event_id, sender, body,
// decryption_error, shield, ts}. Every wait has a deadline (`timeout` seconds, default 30).

import readline from "node:readline";
import { format } from "node:util";

// The sdk logs through console (loglevel) and the Rust crypto traces through console as well: keep stdout for
// the protocol. warn/error go to stderr; debug/info only with ELEMENT_CLIENT_VERBOSE=1.
const toStderr = (...args) => process.stderr.write(format(...args) + "\n");
const quiet = () => {};
const verbose = process.env.ELEMENT_CLIENT_VERBOSE === "1";
console.log = verbose ? toStderr : quiet;
console.info = verbose ? toStderr : quiet;
console.debug = verbose ? toStderr : quiet;
console.trace = verbose ? toStderr : quiet;
console.warn = toStderr;
console.error = toStderr;

const sdk = await import("matrix-js-sdk");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
logger.setLevel(verbose ? "debug" : "warn");

const { ClientEvent, RoomEvent, RoomMemberEvent, MatrixEventEvent, EventType, Preset } = sdk;
const { AllDevicesIsolationMode, OnlySignedDevicesIsolationMode, EventShieldColour, EventShieldReason } = cryptoApi;

const DEFAULT_TIMEOUT = 30; // seconds

function send(line) {
    process.stdout.write(JSON.stringify(line) + "\n");
}

class Timeout extends Error {}

/** The deadline of one command: `timeout` seconds from its arrival, shared by every step and wait in it. */
class Deadline {
    constructor(seconds) {
        this.seconds = seconds;
        this.end = Date.now() + seconds * 1000;
        this.step = "the start"; // what the command is doing now, for the error when a request hangs
    }

    left() {
        return Math.max(0, this.end - Date.now());
    }

    error(what) {
        return new Timeout(`timed out after ${this.seconds} s waiting for ${what}`);
    }
}

/** Resolve with `check()`'s first truthy value; re-check on every `emitter` event in `events` and every 100 ms. */
function until(what, deadline, check, emitter = null, events = []) {
    deadline.step = what;
    return new Promise((resolve, reject) => {
        let done = false;
        let timer = null;
        let poll = null;
        const finish = (fn, value) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            clearInterval(poll);
            for (const name of events) emitter.off(name, attempt);
            fn(value);
        };
        let running = false; // one check at a time: a check may itself make requests
        const attempt = async () => {
            if (done || running) return;
            running = true;
            try {
                const value = await check();
                if (value) finish(resolve, value);
            } catch (error) {
                finish(reject, error);
            } finally {
                running = false;
            }
        };
        timer = setTimeout(() => finish(reject, deadline.error(what)), deadline.left());
        poll = setInterval(attempt, 100);
        for (const name of events) emitter.on(name, attempt);
        attempt();
    });
}

/** The command's promise, or a Timeout naming the step it hung in (a request, say) once its deadline passed. */
function race(promise, deadline) {
    let timer;
    const expired = new Promise((_, reject) => {
        // A little grace, so that a wait inside the command reports its own, more precise, timeout.
        timer = setTimeout(() => reject(deadline.error(deadline.step)), deadline.left() + 250);
    });
    return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function isolationMode(name) {
    if (name === "signed") return new OnlySignedDevicesIsolationMode(); // Element's "exclude insecure devices"
    if (name === "all") return new AllDevicesIsolationMode(false); // the older default
    throw new Error(`unknown isolation mode ${JSON.stringify(name)}; use "signed" or "all"`);
}

let client = null;
let crypto = null;
let me = null; // {user_id, device_id, password}
const reported = new Map(); // event id -> last reported state, so a late decryption is reported once more
const watched = new WeakSet(); // events with a Decrypted listener

async function shieldOf(event) {
    if (!event.isEncrypted() || event.isDecryptionFailure()) return null;
    const info = await crypto.getEncryptionInfoForEvent(event);
    if (!info || info.shieldColour === EventShieldColour.NONE) return null;
    return {
        colour: EventShieldColour[info.shieldColour] ?? String(info.shieldColour),
        reason: info.shieldReason === null ? null : (EventShieldReason[info.shieldReason] ?? String(info.shieldReason)),
    };
}

async function report(event) {
    const failed = event.isDecryptionFailure();
    if (!failed && event.getType() !== EventType.RoomMessage) return; // state, reactions, ...: not a message
    const body = failed ? null : (event.getContent().body ?? null);
    const error = failed ? (event.decryptionFailureReason ?? "UNKNOWN_ERROR") : null;
    let shield = null;
    try {
        shield = await shieldOf(event);
    } catch (err) {
        console.warn("shield of", event.getId(), "failed:", err);
    }
    const key = JSON.stringify([body, error, shield]);
    if (reported.get(event.getId()) === key) return;
    reported.set(event.getId(), key);
    send({
        event: "message", room_id: event.getRoomId(), event_id: event.getId(), sender: event.getSender(),
        body, decryption_error: error, shield, ts: event.getTs(),
    });
}

async function onTimelineEvent(event) {
    if (event.status !== null) return; // a local echo: reported once its remote echo arrives
    if (event.isEncrypted() && !watched.has(event)) {
        watched.add(event);
        // A late decryption (a key arriving after the message) is reported again, with the body.
        event.on(MatrixEventEvent.Decrypted, () => enqueue(() => report(event)));
    }
    if (event.isEncrypted()) {
        await client.decryptEventIfNeeded(event);
    }
    await report(event);
}

// Events are reported one after the other, in the order they arrived: decrypting and computing a shield are
// asynchronous, and a reply must never be streamed before the message it answers.
let queue = Promise.resolve();

function enqueue(work) {
    queue = queue.then(work).catch((err) => console.warn("reporting an event failed:", err));
}

function listen() {
    client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline, removed) => {
        if (toStartOfTimeline || removed || !room) return;
        enqueue(() => onTimelineEvent(event));
    });
    client.on(RoomEvent.LocalEchoUpdated, (event) => {
        if (event.status === null) enqueue(() => onTimelineEvent(event));
    });
    // Accept every invite, as a user who opens the chat the bot (or anyone) started.
    client.on(RoomMemberEvent.Membership, (event, member) => {
        if (member.userId === me.user_id && member.membership === "invite") {
            acceptInvite(member.roomId, event.getContent().is_direct === true, event.getSender());
        }
    });
    // Element lists an invite as soon as its room appears, also when no membership event fired for it.
    client.on(ClientEvent.Room, (room) => acceptIfInvited(room));
    client.on(RoomEvent.MyMembership, (room, membership) => {
        if (membership === "invite") acceptIfInvited(room);
    });
}

const joining = new Set();

async function acceptInvite(roomId, isDirect, inviter) {
    if (joining.has(roomId)) return;
    joining.add(roomId);
    // A person whose join fails (a busy homeserver) presses "Accept" again: up to five tries, 0.5-8 s apart.
    for (let attempt = 1; ; attempt++) {
        try {
            await client.joinRoom(roomId);
            console.warn("joined", roomId, "after", attempt, "attempt(s)");
            break;
        } catch (err) {
            console.warn("joining", roomId, "failed (attempt", attempt, "):", err);
            if (attempt >= 5) {
                joining.delete(roomId);
                return;
            }
            await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (attempt - 1)));
        }
    }
    try {
        if (isDirect && inviter) await addDirect(inviter, roomId); // as Element does for a DM invite
    } catch (err) {
        console.warn("marking", roomId, "as direct failed:", err);
    }
}

function acceptIfInvited(room) {
    if (room?.getMyMembership() !== "invite") return;
    const invite = room.getMember(me.user_id)?.events.member;
    acceptInvite(room.roomId, invite?.getContent().is_direct === true, invite?.getSender());
}

async function addDirect(userId, roomId) {
    const content = { ...(client.getAccountData(EventType.Direct)?.getContent() ?? {}) };
    const rooms = new Set(content[userId] ?? []);
    rooms.add(roomId);
    content[userId] = [...rooms];
    await client.setAccountData(EventType.Direct, content);
}

/** The server's view of our device keys (after /keys/upload) and how many one-time keys it holds. */
async function keysUploaded() {
    const query = await client.downloadKeysForUsers([me.user_id]);
    const device = query.device_keys?.[me.user_id]?.[me.device_id];
    if (!device) return false;
    const counts = await client.uploadKeysRequest({});
    return (counts.one_time_key_counts?.signed_curve25519 ?? 0) > 0 ? device : false;
}

async function authUploadDeviceSigningKeys(makeRequest) {
    // Element at first login still has the password in memory and answers the auth with it right away.
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: me.user_id }, password: me.password };
    try {
        await makeRequest(auth);
    } catch (err) {
        const session = err?.data?.session;
        if (err?.httpStatus !== 401 || !session) throw err;
        await makeRequest({ ...auth, session });
    }
}

const commands = {
    async start({ homeserver, user, password, device_name = "Element test", isolation = "signed", cross_signing = true,
        reset_cross_signing = false, signature_delay_ms = 0 }, deadline) {
        if (client) throw new Error("already started");
        const mode = isolationMode(isolation);
        const anonymous = sdk.createClient({ baseUrl: homeserver });
        deadline.step = "the password login";
        const login = await anonymous.loginRequest({
            type: "m.login.password", identifier: { type: "m.id.user", user }, password,
            initial_device_display_name: device_name,
        });
        me = { user_id: login.user_id, device_id: login.device_id, password };
        client = sdk.createClient({
            baseUrl: homeserver, userId: login.user_id, deviceId: login.device_id, accessToken: login.access_token,
        });
        if (signature_delay_ms) {
            // A slow client or network: the new identity is published this long before the device's signature
            // (Element's set-up uploads the two one after the other).
            const authed = client.http.authedRequest.bind(client.http);
            client.http.authedRequest = async (method, path, ...rest) => {
                if (String(path).includes("/keys/signatures/upload")) {
                    await new Promise((resolve) => setTimeout(resolve, signature_delay_ms));
                }
                return authed(method, path, ...rest);
            };
        }
        deadline.step = "initRustCrypto";
        await client.initRustCrypto({ useIndexedDB: false });
        crypto = client.getCrypto();
        crypto.setDeviceIsolationMode(mode);
        listen();
        const prepared = until("the first sync", deadline, () => client.isInitialSyncComplete(), client,
            [ClientEvent.Sync]);
        await client.startClient({ initialSyncLimit: 20 });
        await prepared;
        await until("our device keys and one-time keys on the server", deadline, keysUploaded);
        if (cross_signing) {
            deadline.step = "bootstrapCrossSigning";
            // reset_cross_signing: Element's "reset your identity" (new keys replace the account's identity).
            await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys, setupNewCrossSigning: reset_cross_signing });
            await until("our device signed by our self-signing key on the server", deadline, async () => {
                // After a reset without secret storage the new identity is not "ready" in the SDK's sense
                // (no backup of its keys); signed devices are what this test client needs.
                if (!reset_cross_signing && !(await crypto.isCrossSigningReady())) return false;
                const device = await keysUploaded();
                return device && Object.keys(device.signatures?.[me.user_id] ?? {}).length > 1;
            });
        }
        for (const room of client.getRooms()) acceptIfInvited(room);
        return { user_id: me.user_id, device_id: me.device_id };
    },

    async open_direct({ user_id }, deadline) {
        deadline.step = "createRoom";
        const { room_id } = await client.createRoom({
            is_direct: true, preset: Preset.TrustedPrivateChat, invite: [user_id],
            initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        });
        await addDirect(user_id, room_id);
        await until(`${user_id} to join ${room_id}`, deadline,
            () => client.getRoom(room_id)?.getMember(user_id)?.membership === "join", client,
            [RoomMemberEvent.Membership]);
        return { room_id };
    },

    async say({ room_id, body }, deadline) {
        // As in Element: the composer of a room we joined a moment ago is there once its state has synced.
        await until(`joined room ${room_id} with its encryption set up`, deadline, async () => {
            const room = client.getRoom(room_id);
            if (room?.getMyMembership() !== "join") return false;
            return !room.hasEncryptionStateEvent() || (await crypto.isEncryptionEnabledInRoom(room_id));
        }, client, [ClientEvent.Room, RoomEvent.MyMembership]);
        deadline.step = "sendMessage";
        const { event_id } = await client.sendMessage(room_id, { msgtype: "m.text", body });
        return { event_id };
    },

    async device_status({ user_id, device_id }) {
        await crypto.getUserDeviceInfo([user_id], true);
        const status = await crypto.getDeviceVerificationStatus(user_id, device_id);
        if (!status) throw new Error(`device ${device_id} of ${user_id} is unknown`);
        return {
            signedByOwner: status.signedByOwner, crossSigningVerified: status.crossSigningVerified,
            localVerified: status.localVerified, tofu: status.tofu, isVerified: status.isVerified(),
        };
    },

    async user_status({ user_id }) {
        await crypto.getUserDeviceInfo([user_id], true);
        const status = await crypto.getUserVerificationStatus(user_id);
        return {
            isCrossSigningVerified: status.isCrossSigningVerified(),
            wasCrossSigningVerified: status.wasCrossSigningVerified(),
            needsUserApproval: status.needsUserApproval, isVerified: status.isVerified(), isTofu: status.isTofu(),
        };
    },

    async devices({ user_id }) {
        const devices = await crypto.getUserDeviceInfo([user_id], true);
        return { devices: [...(devices.get(user_id)?.keys() ?? [])] };
    },

    async set_isolation({ mode }) {
        crypto.setDeviceIsolationMode(isolationMode(mode));
        return {};
    },

    async stop() {
        return {};
    },
};

async function shutdown(code) {
    try {
        client?.stopClient();
    } catch (err) {
        console.warn("stopping:", err);
    }
    // Let stdout drain before leaving.
    process.stdout.write("", () => process.exit(code));
}

async function handle(line) {
    let message;
    try {
        message = JSON.parse(line);
    } catch {
        send({ id: null, ok: false, error: `not JSON: ${line.slice(0, 80)}` });
        return;
    }
    const { id = null, cmd, timeout = DEFAULT_TIMEOUT, ...args } = message;
    const command = commands[cmd];
    try {
        if (!command) throw new Error(`unknown command ${JSON.stringify(cmd)}`);
        if (cmd !== "start" && cmd !== "stop" && !crypto) throw new Error("not started: send start first");
        const deadline = new Deadline(timeout);
        const result = await race(command(args, deadline), deadline);
        send({ id, ok: true, ...result });
        if (cmd === "stop") await shutdown(0);
    } catch (err) {
        const detail = err?.errcode ? `${err.errcode}: ${err.data?.error ?? err.message}` : (err?.message ?? String(err));
        send({ id, ok: false, error: `${cmd}: ${detail}` });
    }
}

process.on("unhandledRejection", (err) => console.warn("unhandled rejection:", err));
const input = readline.createInterface({ input: process.stdin, terminal: false });
input.on("line", (line) => {
    if (line.trim()) handle(line);
});
input.on("close", () => shutdown(0)); // the test (or its process) went away
