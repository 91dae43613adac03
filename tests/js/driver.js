'use strict';
/*
 * The unmodified filestack-js client, driven by cin's end-to-end tests.
 *
 * One JSON command per line on stdin, one JSON reply per line on stdout, so a test keeps
 * one Node process for all its calls:
 *
 *   {"call": "configure", "urls": {"uploadApiUrl", "fileApiUrl", "cdnUrl", "processUrl"}}
 *   {"call": "upload", "apikey", "file", "options"?, "store"?, "security"?}
 *   {"call": "metadata", "apikey", "handle", "options"?, "security"?}
 *   {"call": "download", "apikey", "handle", "security"?}    result: {status, size, sha256}
 *   {"call": "remove", "apikey", "handle", "security"?}
 *   {"call": "storeURL", "apikey", "url", "store"?, "security"?, "tags"?}
 *
 * `security` is {"policy": {...}, "secret": "..."}, signed here by filestack-js's own
 * getSecurity, so cin sees the policy in the SDK's encoding (standard base64).
 *
 * Reply: {"ok": true, "result": ...} or {"ok": false, "error": {...}}, and `requests`: every
 * HTTP request the SDK made for the command (method, path, JSON body), which is how a test
 * sees what the client chose to send (fallback mode's mix of regular and FII parts).
 */
const crypto = require('crypto');
const http = require('http');
const https = require('https');
const readline = require('readline');

const filestack = require('filestack-js');
// The one mutable object the client reads its service URLs from.
const { config } = require('filestack-js/build/main/config');

let requests = [];

function headerValue(headers, name) {
  const key = Object.keys(headers || {}).find(k => k.toLowerCase() === name);
  return key === undefined ? undefined : String(headers[key]);
}

// Record each request below the SDK: method and path as sent, and the body when JSON.
for (const module of [http, https]) {
  const request = module.request;
  module.request = function recordedRequest(options, ...rest) {
    const req = request.call(this, options, ...rest);
    const entry = { method: req.method, path: req.path.split('?')[0] };
    requests.push(entry);
    if (/application\/json/.test(headerValue(options.headers, 'content-type') || '')) {
      const chunks = [];
      const write = req.write;
      const end = req.end;
      req.write = function (chunk, ...args) {
        if (chunk) chunks.push(Buffer.from(chunk));
        return write.call(this, chunk, ...args);
      };
      req.end = function (chunk, ...args) {
        if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
        const text = Buffer.concat(chunks).toString('utf-8');
        try {
          entry.body = text ? JSON.parse(text) : null;
        } catch (error) {
          entry.body = text;  // sent as JSON but not JSON: the test shows it as it went
        }
        return end.call(this, chunk, ...args);
      };
    }
    return req;
  };
}

function describeError(error) {
  if (!error || typeof error !== 'object') {
    return { message: String(error) };
  }
  const response = error.response || (error.details && error.details.code ? {
    status: error.details.code, data: error.details.data } : null);
  return {
    name: error.name,
    message: error.message,
    type: error.type,
    status: response ? response.status : undefined,
    data: response ? response.data : undefined,
  };
}

function security(command) {
  return command.security
    ? filestack.getSecurity(command.security.policy, command.security.secret)
    : undefined;
}

async function upload(command) {
  const client = filestack.init(command.apikey);
  let failure;
  // A failed upload resolves to the file with status "Failed"; the cause comes as an event.
  client.on('upload.error', error => { failure = error; });
  try {
    const file = await client.upload(command.file, command.options || {}, command.store || {},
                                     undefined, security(command));
    return { handle: file.handle, url: file.url, name: file.name, size: file.size,
             mimetype: file.mimetype, status: file.status, key: file.key,
             container: file.container, uploadTags: file.uploadTags };
  } catch (rejected) {
    throw failure || rejected;
  }
}

async function download(command) {
  const response = await filestack.init(command.apikey).download(command.handle,
                                                                 security(command));
  if (!Buffer.isBuffer(response.data)) {
    throw new Error(`the download is not bytes: ${typeof response.data}`);
  }
  return { status: response.status, size: response.data.length,
           sha256: crypto.createHash('sha256').update(response.data).digest('hex') };
}

const CALLS = {
  configure: async command => Object.assign(config.urls, command.urls),
  upload,
  metadata: command => filestack.init(command.apikey).metadata(
    command.handle, command.options, security(command)),
  download,
  storeURL: command => filestack.init(command.apikey).storeURL(
    command.url, command.store, undefined, security(command), command.tags),
  remove: async command => (await filestack.init(command.apikey).remove(
    command.handle, security(command))).data,
};

async function run(line) {
  requests = [];
  let reply;
  try {
    const command = JSON.parse(line);
    if (!CALLS[command.call]) {
      throw new Error(`no call ${command.call}`);
    }
    reply = { ok: true, result: await CALLS[command.call](command) };
  } catch (error) {
    reply = { ok: false, error: describeError(error) };
  }
  reply.requests = requests;
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}

async function main() {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line.trim()) {
      await run(line);
    }
  }
}

main();
