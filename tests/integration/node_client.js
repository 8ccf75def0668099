// A plant's Node.js integration, as its own process: @grpc/grpc-js with @grpc/proto-loader, loaded with the options
// that protos/inspector/v1/inspector.proto's header documents, asks the service what a test asks it and prints what
// it got back as one JSON object on stdout.
//
// The packages come from build/node-clients (`make clients`); run it with NODE_PATH pointing at its node_modules:
//
//   NODE_PATH=build/node-clients/node_modules node tests/integration/node_client.js job.json
//
// The job (a JSON file named by the first argument):
//
//   {"target": "127.0.0.1:50051", "model": "line",
//    "google_protos": ".../site-packages",        // holds google/rpc/status.proto and error_details.proto
//    "frame": "/tmp/crack.png",                    // a PNG file: Inspect, and OIP ModelInfer as a BYTES input
//    "corrupt": "/tmp/corrupt.jpg",                // a JPEG file that cannot be decoded
//    "stream": [{"id": "a", "image": "/tmp/a.png", "encoding": "PNG"}, ...]}
//
// Prints {"inspect", "inspect_without_longs", "stream", "corrupt", "unknown_enum_name", "unknown_enum_number",
// "oip"}: answers as proto-loader gives them (enums as names, uint64 as decimal strings), refusals as {code, details,
// error_info, bad_request} with the google.rpc.Status of the grpc-status-details-bin trailer decoded.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
// The protobufjs that proto-loader itself uses (a dependency of it, not installed on its own).
const protobuf = require(require.resolve('protobufjs', {paths: [path.dirname(require.resolve('@grpc/proto-loader'))]}));

const ROOT = path.resolve(__dirname, '..', '..');
const PROTOS = path.join(ROOT, 'protos');
// As documented in inspector.proto; google/protobuf/timestamp.proto comes bundled with protobufjs.
const LOADER_OPTIONS = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTOS],
};
const DEADLINE_MS = 30000;  // a safety net for every call
const STATUS_DETAILS = 'grpc-status-details-bin';

function loadPackage(file, options) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTOS, file), options));
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, {deadline: deadline()}, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// The google.rpc types the trailer carries, from the googleapis .proto files (google/protobuf/* bundled).
function rpcTypes(includeDir) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(includeDir, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {keepCase: true});
  return root;
}

// A failed call as JSON: its status and the ErrorInfo and BadRequest of its grpc-status-details-bin trailer.
function refusal(err, types) {
  const out = {code: err.code, code_name: grpc.status[err.code], details: err.details};
  const trailer = err.metadata ? err.metadata.get(STATUS_DETAILS) : [];
  if (trailer.length === 0) return out;
  const status = types.lookupType('google.rpc.Status').decode(trailer[0]);
  out.status_code = status.code;
  for (const any of status.details) {
    const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const message = types.lookupType(name).toObject(types.lookupType(name).decode(any.value));
    if (name === 'google.rpc.ErrorInfo') out.error_info = message;
    else if (name === 'google.rpc.BadRequest') out.bad_request = message;
  }
  return out;
}

async function expectRefused(call, types) {
  try {
    return {answered: await call()};
  } catch (err) {
    return refusal(err, types);
  }
}

function inspectStream(client, frames) {
  return new Promise((resolve, reject) => {
    const answers = [];
    const call = client.InspectStream({deadline: deadline()});
    call.on('data', (response) => answers.push(response));
    call.on('error', reject);
    call.on('end', () => resolve(answers));
    for (const f of frames) {
      call.write({data: fs.readFileSync(f.image), encoding: f.encoding, frame_id: f.id, camera_id: 'cam-node'});
    }
    call.end();
  });
}

// An OIP output's raw contents -> plain values: BYTES elements (4-byte little-endian length, then the bytes) as
// strings, FP32 as numbers, UINT8 as base64 of the row-major pixels.
function decodeOutput(tensor, raw) {
  const shape = tensor.shape.map(Number);
  if (tensor.datatype === 'BYTES') {
    const values = [];
    for (let at = 0; at < raw.length;) {
      const size = raw.readUInt32LE(at);
      values.push(raw.subarray(at + 4, at + 4 + size).toString('utf8'));
      at += 4 + size;
    }
    return {datatype: tensor.datatype, shape, values};
  }
  if (tensor.datatype === 'FP32') {
    const values = [];
    for (let at = 0; at < raw.length; at += 4) values.push(raw.readFloatLE(at));
    return {datatype: tensor.datatype, shape, values};
  }
  if (tensor.datatype === 'UINT8') return {datatype: tensor.datatype, shape, base64: raw.toString('base64')};
  throw new Error(`output ${tensor.name}: datatype ${tensor.datatype} not handled here`);
}

async function modelInfer(client, job) {
  const request = {
    model_name: job.model, id: 'node-oip',
    parameters: {camera_id: {string_param: 'cam-node'}, frame_id: {string_param: 'node-oip'}},
    inputs: [{name: 'image', datatype: 'BYTES', shape: [1], contents: {bytes_contents: [fs.readFileSync(job.frame)]}}],
    outputs: [{name: 'verdict'}, {name: 'defect_score'}, {name: 'mask'}],
  };
  const response = await unary(client, 'ModelInfer', request);
  const out = {model: `${response.model_name}/${response.model_version}`, outputs: {}};
  response.outputs.forEach((tensor, i) => {
    out.outputs[tensor.name] = decodeOutput(tensor, response.raw_output_contents[i]);
  });
  return out;
}

// JSON.stringify's replacer: a bytes field (a Buffer, which reaches the replacer as {type, data}) as its length.
function bytesAsLength(key, value) {
  return value && value.type === 'Buffer' && Array.isArray(value.data) ? value.data.length : value;
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const v1 = loadPackage('inspector/v1/inspector.proto', LOADER_OPTIONS).inspector.v1;
  const withoutLongs = {...LOADER_OPTIONS};
  delete withoutLongs.longs;
  const v1Raw = loadPackage('inspector/v1/inspector.proto', withoutLongs).inspector.v1;
  const oip = loadPackage('inspector/oip/inference.proto', LOADER_OPTIONS).inference;
  const types = rpcTypes(job.google_protos);
  const credentials = grpc.credentials.createInsecure();
  const inspector = new v1.Inspector(job.target, credentials);
  const inspectorRaw = new v1Raw.Inspector(job.target, credentials);
  const inference = new oip.GRPCInferenceService(job.target, credentials);
  const frame = fs.readFileSync(job.frame);
  const corrupt = fs.readFileSync(job.corrupt);
  const request = (data, encoding, id) => ({data, encoding, frame_id: id, camera_id: 'cam-node'});

  const out = {};
  out.inspect = await unary(inspector, 'Inspect', request(frame, 'PNG', 'node-frame'));
  const raw = await unary(inspectorRaw, 'Inspect', request(frame, 'PNG', 'node-frame-raw'));
  out.inspect_without_longs = {regions: raw.regions.map((r) => ({area_px: r.area_px, type: typeof r.area_px}))};
  out.stream = await inspectStream(inspector, job.stream);
  out.corrupt = await expectRefused(() => unary(inspector, 'Inspect', request(corrupt, 'JPEG', 'node-corrupt')), types);
  // What a client sends for an Encoding it knows and the service does not: a name (proto-loader's serializer
  // drops a name it cannot find) and a number (sent as is).
  out.unknown_enum_name = await expectRefused(
    () => unary(inspector, 'Inspect', request(frame, 'WEBP', 'node-webp')), types);
  out.unknown_enum_number = await expectRefused(
    () => unary(inspector, 'Inspect', request(frame, 42, 'node-42')), types);
  out.oip = await modelInfer(inference, job);
  for (const client of [inspector, inspectorRaw, inference]) client.close();
  process.stdout.write(JSON.stringify(out, bytesAsLength) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
