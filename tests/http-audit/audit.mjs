// Runs every graphql-http server audit against URL and prints one line per audit.
// Exit status 1 when any MUST or SHOULD audit fails (MAY audits are reported only).
//   node audit.mjs http://127.0.0.1:8080/graphql
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}
const counts = { ok: 0, warn: 0, error: 0 };
const failures = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  counts[result.status] += 1;
  const level = audit.name.split(' ')[0];
  console.log(`${result.status.padEnd(5)} ${audit.id} ${audit.name}`);
  if (result.status !== 'ok') {
    const detail = result.reason + (result.response ? ` (status ${result.response.status})` : '');
    console.log(`      ${detail}`);
    if (level === 'MUST' || level === 'SHOULD') failures.push(`${audit.id} ${audit.name}: ${detail}`);
  }
}
console.log(`audits: ${counts.ok} ok, ${counts.warn} warnings, ${counts.error} errors`);
if (failures.length > 0) {
  console.log(`MUST/SHOULD failures: ${failures.length}`);
  for (const f of failures) console.log(`  ${f}`);
  process.exit(1);
}
