#!/usr/bin/env node
// A Schema Registry for tests and the examples: the REST subset Confluent's serializers and
// kiq use, in memory, persisted to a state file so that a registry stopped (an outage) and
// started again on the same port answers for the same ids.
//   node registry.js --port-file=PATH [--port=N] [--state=PATH]
// Routes: POST /subjects/{s}/versions, POST /subjects/{s} (lookup), GET /schemas/ids/{id},
// GET /subjects, GET /subjects/{s}/versions, GET /subjects/{s}/versions/{v|latest},
// PUT/GET /config[/{s}] (compatibility: accepted, not enforced).
// Test control: PUT /_control/hang {"hang": true} holds every GET /schemas/ids/{id} open (a
// registry that does not answer) until PUT /_control/hang {"hang": false} answers them.
// Errors as the registry answers them: {"error_code": 40401|40402|40403, "message": ...}.
'use strict';
const fs = require('fs');
const http = require('http');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (!m) throw new Error(`bad argument ${a}`);
  return [m[1], m[2]];
}));
const statePath = args.state;
let state = { nextId: 1, schemas: {}, subjects: {} };  // id → {schema, schemaType, references}
if (statePath && fs.existsSync(statePath)) state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
const save = () => { if (statePath) fs.writeFileSync(statePath, JSON.stringify(state)); };

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/vnd.schemaregistry.v1+json' });
  res.end(JSON.stringify(body));
}
const notFound = (res, code, message) => send(res, 404, { error_code: code, message });

function findId(s) {
  for (const [id, known] of Object.entries(state.schemas)) {
    if (known.schema === s.schema && (known.schemaType || 'AVRO') === (s.schemaType || 'AVRO')) {
      return Number(id);
    }
  }
  return 0;
}

function version(res, subject, v) {
  const versions = state.subjects[subject];
  if (!versions) return notFound(res, 40401, `Subject '${subject}' not found.`);
  const i = v === 'latest' ? versions.length - 1 : Number(v) - 1;
  if (!(i >= 0 && i < versions.length)) return notFound(res, 40402, 'Version not found.');
  const id = versions[i];
  const s = state.schemas[id];
  const out = { subject, version: i + 1, id, schema: s.schema };
  if (s.schemaType && s.schemaType !== 'AVRO') out.schemaType = s.schemaType;
  return send(res, 200, out);
}

let hang = false;
let held = [];  // answers of the requests held while hanging

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const path = decodeURIComponent(req.url.split('?')[0]);
    let m;
    if (req.method === 'PUT' && path === '/_control/hang') {
      hang = Boolean(JSON.parse(body || '{}').hang);
      const release = hang ? [] : held;
      if (!hang) held = [];
      for (const answer of release) answer();
      return send(res, 200, { hang, released: release.length });
    }
    if (req.method === 'GET' && (m = /^\/schemas\/ids\/(\d+)$/.exec(path))) {
      const id = m[1];
      const answer = () => {
        const s = state.schemas[id];
        if (!s) return notFound(res, 40403, `Schema ${id} not found`);
        const out = { schema: s.schema };
        // As the registry does: no schemaType for Avro.
        if (s.schemaType && s.schemaType !== 'AVRO') out.schemaType = s.schemaType;
        if (s.references && s.references.length) out.references = s.references;
        return send(res, 200, out);
      };
      if (hang) {
        held.push(answer);
        return undefined;
      }
      return answer();
    }
    if ((m = /^\/config(\/[^/]+)?$/.exec(path))) {  // compatibility: accepted, not enforced
      if (req.method === 'PUT') return send(res, 200, JSON.parse(body || '{}'));
      return send(res, 200, { compatibilityLevel: 'BACKWARD' });
    }
    if (req.method === 'GET' && path === '/subjects') return send(res, 200, Object.keys(state.subjects));
    if (req.method === 'GET' && (m = /^\/subjects\/([^/]+)\/versions$/.exec(path))) {
      const versions = state.subjects[m[1]];
      if (!versions) return notFound(res, 40401, `Subject '${m[1]}' not found.`);
      return send(res, 200, versions.map((_, i) => i + 1));
    }
    if (req.method === 'GET' && (m = /^\/subjects\/([^/]+)\/versions\/([^/]+)$/.exec(path))) {
      return version(res, m[1], m[2]);
    }
    if (req.method === 'POST' && (m = /^\/subjects\/([^/]+)(\/versions)?$/.exec(path))) {
      let s;
      try { s = JSON.parse(body); } catch (e) { return send(res, 422, { error_code: 42201, message: 'Invalid schema' }); }
      const subject = m[1];
      let id = findId(s);
      if (!m[2]) {  // lookup: is this schema registered under the subject?
        const versions = state.subjects[subject] || [];
        const i = versions.indexOf(id);
        if (i < 0) return notFound(res, 40403, 'Schema not found');
        return send(res, 200, { subject, version: i + 1, id, schema: s.schema });
      }
      if (!id) {
        id = state.nextId++;
        state.schemas[id] = { schema: s.schema, schemaType: s.schemaType, references: s.references || [] };
      }
      const versions = state.subjects[subject] || (state.subjects[subject] = []);
      if (!versions.includes(id)) versions.push(id);
      save();
      return send(res, 200, { id });
    }
    return notFound(res, 404, `no route ${req.method} ${path}`);
  });
});
server.listen(Number(args.port || 0), '127.0.0.1', () => {
  const port = server.address().port;
  if (args['port-file']) {
    fs.writeFileSync(`${args['port-file']}.tmp`, `${port}\n`);
    fs.renameSync(`${args['port-file']}.tmp`, args['port-file']);
  }
  console.log(`schema registry listening on http://127.0.0.1:${port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
