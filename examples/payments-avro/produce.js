#!/usr/bin/env node
// Produces Avro payments the way a Java or Node producer does: Confluent's wire format, written
// by a real serializer (@kafkajs/confluent-schema-registry, installed in tests/js), its writer
// schemas registered under the subject payments-value. Writes each record's value to
// OUT_DIR/<n>.<customer>.avro, for kcat to produce with the customer as key (see README.md).
//   node produce.js REGISTRY_URL OUT_DIR [COUNT]
'use strict';
const fs = require('fs');
const path = require('path');
const { SchemaRegistry, SchemaType } = require(
  path.join(__dirname, '../../tests/js/node_modules/@kafkajs/confluent-schema-registry'));

const v1 = {
  type: 'record', name: 'Payment', namespace: 'shop',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'customer', type: 'string' },
    { name: 'amount', type: 'long' },
    { name: 'method', type: { type: 'enum', name: 'Method', symbols: ['CARD', 'CASH', 'TRANSFER'] } },
  ],
};
// Version 2 adds a field with a default: readers of v1 and v2 records both work (BACKWARD).
const v2 = { ...v1, fields: [...v1.fields, { name: 'currency', type: 'string', default: 'EUR' }] };

async function main() {
  const [url, outDir, countArg] = process.argv.slice(2);
  fs.mkdirSync(outDir, { recursive: true });
  const registry = new SchemaRegistry({ host: url });
  const subject = 'payments-value';
  const { id: id1 } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v1) }, { subject });
  const { id: id2 } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v2) }, { subject });
  const customers = ['alice', 'bob', 'carol', 'dave'];
  const methods = ['CARD', 'CASH', 'TRANSFER'];
  const count = Number(countArg || 12);
  console.log(`schema ids: v1 ${id1}, v2 ${id2}; writing ${count} payments to ${outDir}`);
  for (let i = 0; i < count; i++) {
    const customer = customers[i % customers.length];
    const payment = { id: `pay-${i}`, customer, amount: 500 * (i + 1), method: methods[i % 3] };
    const bytes = i % 2 === 0
      ? await registry.encode(id1, payment)
      : await registry.encode(id2, { ...payment, currency: 'USD' });
    fs.writeFileSync(path.join(outDir, `${String(i).padStart(4, '0')}.${customer}.avro`), bytes);
  }
}
main().catch((e) => { console.error(e.message); process.exit(1); });
