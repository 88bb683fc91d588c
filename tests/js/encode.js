#!/usr/bin/env node
// Encodes records with Confluent's wire format through a real serializer library
// (@kafkajs/confluent-schema-registry: Avro via avsc, Protobuf via protobufjs, JSON Schema via
// ajv), registering the schemas against a registry, as a producer application would.
//   node encode.js SPEC.json OUT.txt
// SPEC: {"registry": "http://127.0.0.1:PORT",
//        "schemas": [{"subject": "s-value", "type": "AVRO"|"PROTOBUF"|"JSON", "schema": "..."}],
//        "records": [{"schema": 0, "value": {...}}, ...]}
//        "records": [{"schema": 0, "value": {...}, "message": "Pay"}, ...]}  (message: protobuf)
// In values, {"$base64": "..."} stands for bytes.
// OUT: the id of each schema on one line ("ids 1 2"), then one line of hex per record.
//
// Protobuf: the library writes no message indexes after the schema id (Confluent's
// KafkaProtobufSerializer does: a zigzag-varint count, then the indexes; a single 0 for the
// first message), so the payload comes from protobufjs (the library's own encoder) and the
// header is Confluent's, with the indexes of the record's message in its file.
'use strict';
const fs = require('fs');
const protobuf = require('protobufjs');
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');

function zigzag(n) {
  const out = [];
  let v = (n << 1) ^ (n >> 31);
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

// Confluent's framing of a protobuf message `name` of the .proto text `schema`.
function encodeProtobuf(id, schema, name, value) {
  const parsed = protobuf.parse(schema, { keepCase: true });
  const pkg = parsed.package ? `${parsed.package}.` : '';
  const type = parsed.root.lookupType(`${pkg}${name}`);
  // The path of indexes: position among the messages of the file, then among nested ones.
  const path = [];
  for (let t = type; t && t.parent; t = t.parent) {
    const siblings = t.parent.nestedArray.filter((n) => n instanceof protobuf.Type);
    path.unshift(siblings.indexOf(t));
    if (!(t.parent instanceof protobuf.Type)) break;
  }
  const indexes = path.length === 1 && path[0] === 0 ? [0] : [...zigzag(path.length), ...path.flatMap(zigzag)];
  const header = Buffer.alloc(5);
  header.writeUInt32BE(id, 1);
  const err = type.verify(value);
  if (err) throw new Error(`invalid ${name}: ${err}`);
  return Buffer.concat([header, Buffer.from(indexes), Buffer.from(type.encode(type.fromObject(value)).finish())]);
}

async function main() {
  const [specPath, outPath] = process.argv.slice(2);
  // {"$base64": "..."} is a Buffer (Avro bytes and fixed).
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'),
    (k, v) => (v && typeof v === 'object' && typeof v.$base64 === 'string' ? Buffer.from(v.$base64, 'base64') : v));
  const registry = new SchemaRegistry({ host: spec.registry });
  const ids = [];
  for (const s of spec.schemas) {
    const { id } = await registry.register(
      { type: SchemaType[s.type], schema: s.schema }, { subject: s.subject });
    ids.push(id);
  }
  const lines = [`ids ${ids.join(' ')}`];
  for (const r of spec.records) {
    const s = spec.schemas[r.schema];
    const bytes = s.type === 'PROTOBUF'
      ? encodeProtobuf(ids[r.schema], s.schema, r.message, r.value)
      : await registry.encode(ids[r.schema], r.value);
    lines.push(bytes.toString('hex'));
  }
  fs.writeFileSync(outPath, `${lines.join('\n')}\n`);
}
main().catch((e) => { console.error(e); process.exit(1); });
