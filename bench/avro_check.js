#!/usr/bin/env node
// bench_smoke's truth for the Avro records of kiq-bench-baselines: decodes each line's wire
// bytes with @kafkajs/confluent-schema-registry (a real Confluent serializer library; it reads
// the magic byte and schema id and fetches the writer schema from the registry) and compares
// the decoded record with the JSON value of the same record.
//   NODE_PATH=tests/js/node_modules node bench/avro_check.js REGISTRY_URL SUBJECT LINES_FILE
// LINES_FILE: `kiq-bench-baselines encode --format=avro` output (hex, a tab, the JSON value).
'use strict';
const fs = require('fs');
const assert = require('assert');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');

async function main() {
  const [url, subject, path] = process.argv.slice(2);
  const registry = new SchemaRegistry({ host: url });
  // The schema the records name must be the one registered under the topic's subject.
  const latest = await registry.getLatestSchemaId(subject);
  const lines = fs.readFileSync(path, 'utf8').split('\n').filter((l) => l.length);
  assert(lines.length > 0, 'no records');
  for (const [n, line] of lines.entries()) {
    const [hex, json] = line.split('\t');
    const bytes = Buffer.from(hex, 'hex');
    assert.strictEqual(bytes[0], 0, `record ${n}: magic byte`);
    assert.strictEqual(bytes.readUInt32BE(1), latest, `record ${n}: schema id`);
    const decoded = await registry.decode(bytes);
    assert.deepStrictEqual({ ...decoded }, JSON.parse(json), `record ${n}`);
  }
  console.log(`avro ok: ${lines.length} records decode to their JSON values (schema id ${latest})`);
}
main().catch((e) => { console.error(e); process.exit(1); });
