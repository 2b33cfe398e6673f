#!/usr/bin/env node
// A Caseway client in JavaScript with @grpc/grpc-js (a second, independent gRPC implementation):
// it loads proto/ at run time with @grpc/proto-loader, so nothing is generated.
//
//   node caseway.js publish --destination 440305 --count 3 --prefix js-    publish a batch
//   node caseway.js publish-bad                                             see a typed refusal
//   node caseway.js inbox [--ack] [--answer]                               read the inbox; with
//                   --answer, answer each verification request with a CONFIRMED feedback notice
//                   (published before the request is acknowledged)
//
// Every command takes --address host:port --ca ca.crt --cert office.crt --key office.key.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = process.env.CASEWAY_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');

function parseArgs(argv) {
  const args = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const key = argv[i].slice(2);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        args[key] = true;
      } else {
        args[key] = next;
        i++;
      }
    } else {
      args._.push(argv[i]);
    }
  }
  return args;
}

function gateway(args) {
  for (const flag of ['address', 'ca', 'cert', 'key']) {
    if (!args[flag]) throw new Error(`--${flag} is required`);
  }
  const definition = protoLoader.loadSync(['caseway/v1/gateway.proto'], {
    includeDirs: [PROTO_DIR],
    keepCase: true, // field names exactly as in the .proto (snake_case)
    longs: String, // uint64 sequence numbers as strings: no precision lost
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const caseway = grpc.loadPackageDefinition(definition).caseway.v1;
  const credentials = grpc.credentials.createSsl(
    fs.readFileSync(args.ca), fs.readFileSync(args.key), fs.readFileSync(args.cert));
  return new caseway.Gateway(args.address, credentials);
}

// The google.rpc.Status in a refusal's trailers: the stable reason and every bad field.
function explain(err) {
  const lines = [`refused: ${grpc.status[err.code]}: ${err.details}`];
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (raw) {
    const root = new protobuf.Root();
    root.resolvePath = (origin, target) => path.join(PROTO_DIR, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
    const Status = root.lookupType('google.rpc.Status');
    const status = Status.decode(raw);
    for (const any of status.details) {
      const type = any.type_url.split('/').pop();
      const detail = root.lookupType(type).decode(any.value);
      if (type === 'google.rpc.ErrorInfo') lines.push(`  reason: ${detail.reason}`);
      if (type === 'google.rpc.BadRequest') {
        for (const v of detail.field_violations || detail.fieldViolations) {
          lines.push(`  ${v.field}: ${v.description}`);
        }
      }
    }
  }
  return lines.join('\n');
}

function notice(id, destination) {
  const now = Date.now();
  return {
    notice_id: id,
    case_id: `case-${id}`,
    subject: {
      name: '张三',
      id_number: '11010519491231002X',
      sex: 'SEX_FEMALE',
      birth_date: { year: 1990, month: 5, day: 17 },
      registered_region: '360102',
    },
    destinations: [destination],
    occurred_at: { seconds: String(Math.floor(now / 1000) - 60), nanos: 0 },
    priority: 'PRIORITY_NORMAL',
    verification_request: { request_id: id, items: ['marital status'] },
  };
}

function publish(client, args) {
  const count = Number(args.count || 1);
  const notices = [];
  for (let i = 0; i < count; i++) notices.push(notice(`${args.prefix || 'js-'}${i}`, args.destination));
  return new Promise((resolve, reject) => {
    client.PublishBatch({ notices }, { deadline: Date.now() + 30000 }, (err, resp) => {
      if (err) return reject(new Error(explain(err)));
      for (const r of resp.results) {
        const seqs = r.deliveries.map((d) => `${d.destination}:${d.seq}`).join(',');
        console.log(`${r.notice_id}\t${r.duplicate ? 'duplicate' : 'stored'}\t${seqs}`);
      }
      resolve(0);
    });
  });
}

function publishBad(client, args) {
  const bad = notice('js-bad', args.destination || '440305');
  bad.subject.id_number = '123';
  delete bad.priority;
  return new Promise((resolve) => {
    client.Publish({ notice: bad }, { deadline: Date.now() + 30000 }, (err) => {
      if (!err) {
        console.log('stored (unexpected)');
        return resolve(1);
      }
      console.log(explain(err));
      resolve(0);
    });
  });
}

// The feedback notice answering a received verification request. Its id is derived from the
// request's, so answering the same request twice publishes the same notice (a retry).
function feedbackFor(item) {
  const request = item.notice;
  return {
    notice_id: `fb-${item.origin}-${request.notice_id}`,
    case_id: request.case_id,
    subject: request.subject,
    destinations: [item.origin],
    occurred_at: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
    priority: request.priority,
    in_reply_to: request.notice_id,
    in_reply_to_origin: item.origin,
    feedback: { outcome: 'OUTCOME_CONFIRMED' },
  };
}

function inbox(client, args) {
  return new Promise((resolve, reject) => {
    const call = client.Inbox({ deadline: Date.now() + Number(args.timeout || 30) * 1000 });
    const ack = Boolean(args.ack || args.answer);
    let count = 0;
    call.on('data', (resp) => {
      if (resp.caught_up) {
        call.end(); // the node commits the acks sent so far, then ends the stream with OK
        return;
      }
      const item = resp.item;
      const kind = item.notice.body; // with `oneofs: true`, the name of the body that is set
      console.log(JSON.stringify({
        inbox_seq: item.inbox_seq, origin: item.origin, notice_id: item.notice.notice_id, kind,
      }));
      count++;
      const done = () => { if (ack) call.write({ ack: { inbox_seqs: [item.inbox_seq] } }); };
      if (!args.answer || kind !== 'verification_request') return done();
      // Acknowledge only after the answer is stored: the stream waits meanwhile.
      call.pause();
      client.Publish({ notice: feedbackFor(item) }, { deadline: Date.now() + 30000 }, (err, r) => {
        if (err) {
          call.cancel();
          return reject(new Error(explain(err)));
        }
        console.log(JSON.stringify({ answered: item.notice.notice_id, duplicate: Boolean(r.duplicate) }));
        done();
        call.resume();
      });
    });
    call.on('error', (err) => reject(new Error(explain(err))));
    call.on('end', () => {
      console.error(`read ${count} notices${ack ? ' (acknowledged)' : ''}`);
      resolve(0);
    });
    // Why the notices are read: the node keeps it in its access log (docs/privacy.md).
    call.write({ start: { follow: false, ack, purpose: args.purpose || 'inflow processing' } });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const command = args._[0];
  const commands = { publish, 'publish-bad': publishBad, inbox };
  if (!commands[command]) {
    console.error('usage: node caseway.js publish|publish-bad|inbox --address A --ca F --cert F --key F');
    return 2;
  }
  const client = gateway(args);
  try {
    return await commands[command](client, args);
  } finally {
    client.close();
  }
}

main().then((code) => process.exit(code), (err) => {
  console.error(err.message);
  process.exit(1);
});
