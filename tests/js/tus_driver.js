'use strict';
/*
 * The unmodified tus-js-client (Node), driven by cin's tus tests: one command as JSON in
 * argv[2], one JSON line of result on stdout.
 *
 *   {"call": "upload", "endpoint", "file", "metadata", "chunkSize"?, "parallelUploads"?}
 *       result: {url}
 *   {"call": "interrupt", "endpoint", "file", "metadata", "chunkSize", "storage", "after"}
 *       starts an upload that stores its URL in `storage` (tus.FileUrlStorage), and
 *       aborts it once `after` bytes are acknowledged. result: {url, offset}
 *   {"call": "resume", "endpoint", "file", "metadata", "chunkSize", "storage"}
 *       finds the upload `storage` holds for the file and goes on with it.
 *       result: {url, resumedFrom}
 *   {"call": "terminate", "url"}         tus.Upload.terminate. result: {}
 */
const fs = require('fs');
const tus = require('tus-js-client');

function options(command, extra) {
  return {
    endpoint: command.endpoint,
    metadata: command.metadata,
    chunkSize: command.chunkSize || Infinity,
    parallelUploads: command.parallelUploads || 1,
    retryDelays: [0, 200, 500],
    ...extra,
  };
}

function run(command) {
  return new Promise((resolve, reject) => {
    const data = fs.readFileSync(command.file);
    switch (command.call) {
      case 'upload': {
        const upload = new tus.Upload(data, options(command, {
          onError: reject,
          onSuccess: () => resolve({ url: upload.url }),
        }));
        upload.start();
        break;
      }
      case 'interrupt': {
        const upload = new tus.Upload(data, options(command, {
          urlStorage: new tus.FileUrlStorage(command.storage),
          fingerprint: async () => `cin-test-${command.file}`,
          onError: reject,
          onSuccess: () => reject(new Error('finished before it could be interrupted')),
          onChunkComplete: (_size, accepted) => {
            if (accepted >= command.after) {
              upload.abort().then(() => resolve({ url: upload.url, offset: accepted }));
            }
          },
        }));
        upload.start();
        break;
      }
      case 'resume': {
        let resumedFrom = null;
        const upload = new tus.Upload(data, options(command, {
          urlStorage: new tus.FileUrlStorage(command.storage),
          fingerprint: async () => `cin-test-${command.file}`,
          onError: reject,
          onProgress: (sent) => { if (resumedFrom === null) resumedFrom = sent; },
          onSuccess: () => resolve({ url: upload.url, resumedFrom, offset: upload._offset }),
        }));
        upload.findPreviousUploads().then((previous) => {
          if (previous.length === 0) {
            reject(new Error('no previous upload stored'));
            return;
          }
          upload.resumeFromPreviousUpload(previous[0]);
          upload.start();
        }, reject);
        break;
      }
      default:
        reject(new Error(`unknown call ${command.call}`));
    }
  });
}

const command = JSON.parse(process.argv[2]);
const done = command.call === 'terminate'
  ? tus.Upload.terminate(command.url, { retryDelays: [0, 200] }).then(() => ({}))
  : run(command);
done.then(
  (result) => { process.stdout.write(JSON.stringify({ ok: true, result }) + '\n'); },
  (error) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error) }) + '\n');
    process.exitCode = 1;
  },
);
