#!/usr/bin/env node
// AdvEx from Node.js: upload a Keras model and an .npz dataset, run an
// evasion evaluation (FGSM and PGD, L-inf), follow it to the end and print
// its report. The client is built at run time from the public protos in
// ../../protos with @grpc/proto-loader: no generated code.
//
//   node examples/node/evaluate.js --gateway 127.0.0.1:50051 MODEL.keras DATA.npz
//
// Exit codes: 0 the evaluation SUCCEEDED; 1 it did not, an upload was
// REJECTED, or a gRPC/HTTP error; 2 a usage problem.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Readable } = require('node:stream');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const USAGE = `usage: node evaluate.js [--gateway HOST:PORT] [--max-samples N] [--eps EPS] MODEL.keras DATA.npz

  --gateway HOST:PORT  the AdvEx gateway (default $ADVEX_GATEWAY_ADDR or 127.0.0.1:50051)
  --max-samples N      evaluate the first N samples only (default 100; 0: all)
  --eps EPS            the L-inf budget of FGSM and PGD (default 0.1)`;

class UsageError extends Error {}
class Rejected extends Error {}

// Names of gRPC status codes: 3 -> "INVALID_ARGUMENT".
const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        gateway: { type: 'string', default: process.env.ADVEX_GATEWAY_ADDR || '127.0.0.1:50051' },
        'max-samples': { type: 'string', default: '100' },
        eps: { type: 'string', default: '0.1' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length !== 2) throw new UsageError('give exactly two files: MODEL.keras DATA.npz');
  const maxSamples = values['max-samples'];
  if (!/^\d+$/.test(maxSamples)) throw new UsageError(`--max-samples ${maxSamples}: give a whole number >= 0`);
  const eps = Number(values.eps);
  if (!(eps > 0)) throw new UsageError(`--eps ${values.eps}: give a number > 0`);
  for (const file of positionals) {
    if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) throw new UsageError(`${file} is not a file`);
  }
  return { gateway: values.gateway, maxSamples, eps, model: positionals[0], dataset: positionals[1] };
}

// The two public services, from the protos as they are. The options keep
// field names as written in the .proto (snake_case), int64 as strings,
// enums as their names, unset fields at their defaults and the name of the
// set member of each oneof.
function loadServices(address) {
  const definition = protoLoader.loadSync(['advex/v1/artifact.proto', 'advex/v1/evaluation.proto'], {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).advex.v1;
  const credentials = grpc.credentials.createInsecure();
  return {
    artifacts: new v1.ArtifactService(address, credentials),
    evaluations: new v1.EvaluationService(address, credentials),
  };
}

// A unary call as a promise, with a deadline.
function call(client, method, request, seconds = 60) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + seconds * 1000 }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

async function fileDigest(file) {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
  return { size: fs.statSync(file).size, sha256: hash.digest('hex') };
}

// CreateUpload -> PUT the bytes to the presigned URL -> CompleteUpload.
async function upload(artifacts, file, kind) {
  const { size, sha256 } = await fileDigest(file);
  const created = await call(artifacts, 'CreateUpload', {
    kind,
    display_name: path.basename(file),
    size_bytes: String(size),
    sha256,
  });
  const name = created.artifact.name;
  // The URL is signed for exactly these headers; Content-Length is the size
  // declared above. The body is streamed, not read into memory.
  const response = await fetch(created.upload_url, {
    method: created.upload_method || 'PUT',
    headers: { ...created.upload_headers, 'Content-Length': String(size) },
    body: Readable.toWeb(fs.createReadStream(file)),
    duplex: 'half',
  });
  await response.arrayBuffer();
  if (!response.ok) {
    throw new Error(`the object store refused the upload of ${path.basename(file)}: HTTP ${response.status} ${response.statusText}`);
  }
  let artifact;
  try {
    artifact = (await call(artifacts, 'CompleteUpload', { name }, 300)).artifact;
  } catch (err) {
    // A failed verification rejects the artifact and fails the call with
    // INVALID_ARGUMENT: the artifact says why.
    if (err.code !== grpc.status.INVALID_ARGUMENT) throw err;
    artifact = (await call(artifacts, 'GetArtifact', { name })).artifact;
    if (artifact.state !== 'ARTIFACT_STATE_REJECTED') throw err;
  }
  const state = artifact.state.replace('ARTIFACT_STATE_', '');
  console.log(`${artifact.name}  ${state}  ${artifact.display_name}  ${artifact.size_bytes} bytes  sha256 ${artifact.sha256.slice(0, 12)}`);
  if (artifact.state !== 'ARTIFACT_STATE_READY') {
    throw new Rejected(`${artifact.name} (${artifact.display_name}) was ${state}: ${artifact.rejection_reason || 'no reason given'}`);
  }
  return artifact;
}

// Calls back with each snapshot of the evaluation until the stream ends
// (the server ends it at a terminal state); resolves with the last one.
function watch(evaluations, name, onUpdate) {
  return new Promise((resolve, reject) => {
    let last = null;
    const stream = evaluations.WatchEvaluation({ name });
    stream.on('data', (response) => {
      last = response.evaluation;
      onUpdate(last);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(last));
  });
}

const short = (state) => state.replace('EVALUATION_STATE_', '');

async function main() {
  const args = parseCommandLine(process.argv.slice(2));
  const { artifacts, evaluations } = loadServices(args.gateway);
  try {
    const model = await upload(artifacts, args.model, 'ARTIFACT_KIND_MODEL');
    const dataset = await upload(artifacts, args.dataset, 'ARTIFACT_KIND_DATASET');

    const created = await call(evaluations, 'CreateEvaluation', {
      model: model.name,
      clip_min: 0,
      clip_max: 1,
      display_name: `node example: ${path.basename(args.model)}`,
      evasion: {
        dataset: dataset.name,
        max_samples: args.maxSamples,
        attacks: [
          { attack: 'fgsm', norm: 'inf', eps: args.eps },
          { attack: 'pgd', norm: 'inf', eps: args.eps, steps: 40 },
        ],
      },
    });
    const name = created.evaluation.name;
    console.log(`evaluation ${name}  ${short(created.evaluation.state)}`);

    // A snapshot comes on every change of the evaluation; print a line when
    // what it shows (state, progress, stage) changed.
    let shown = '';
    const last = await watch(evaluations, name, (evaluation) => {
      const progress = evaluation.progress || { done: '0', total: '0', stage: '' };
      const line = `  ${short(evaluation.state)}  ${progress.done}/${progress.total}  ${progress.stage}`.trimEnd();
      if (line !== shown) console.log((shown = line));
    });
    const state = last ? last.state : 'EVALUATION_STATE_UNSPECIFIED';
    if (state !== 'EVALUATION_STATE_SUCCEEDED') {
      console.error(`evaluation ${name} ended ${short(state)}${last && last.error ? `: ${last.error}` : ''}`);
      return 1;
    }

    const { report } = await call(evaluations, 'GetReport', { name });
    const evasion = report.evasion;
    console.log(`report ${report.name}  ${short(report.state)}`);
    console.log(`samples ${evasion.samples}`);
    console.log(`clean accuracy ${evasion.clean_accuracy}`);
    for (const attack of evasion.attacks) {
      console.log(
        `${attack.attack} ${attack.norm} eps=${attack.eps}  adversarial accuracy ${attack.adversarial_accuracy}` +
          `  attack success rate ${attack.attack_success_rate}`,
      );
    }
    console.log(`robustness score ${evasion.robustness_score}`);
    return 0;
  } finally {
    artifacts.close();
    evaluations.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof Rejected) {
      console.error(`upload rejected: ${err.message}`);
      process.exitCode = 1;
    } else if (typeof err.code === 'number' && err.code in STATUS_NAMES && 'details' in err) {
      console.error(`gRPC error ${STATUS_NAMES[err.code]}: ${err.details}`);
      process.exitCode = 1;
    } else {
      console.error(`error: ${err.message}`);
      process.exitCode = 1;
    }
  },
);
