// Adds jobs with BullMQ's own client API, the way an application does, then exits.
//
//   node enqueue.js '{"port": 6379, "prefix": "bull", "ops": [
//       {"queue": "emails", "pause": true},
//       {"queue": "emails", "jobs": 3, "opts": {"priority": 2}, "data": {"fail": true}}]}'
//
// Ops run in order. `pause` pauses the queue (BullMQ moves `wait` to `paused`); `jobs` adds that
// many jobs with the given options and data. Prints one line per op.
const { Queue } = require('bullmq');

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const connection = { host: '127.0.0.1', port: spec.port };
  const queues = new Map();
  const queue = name => {
    if (!queues.has(name)) {
      queues.set(name, new Queue(name, { connection, prefix: spec.prefix || 'bull' }));
    }
    return queues.get(name);
  };
  for (const op of spec.ops) {
    const q = queue(op.queue);
    if (op.pause) {
      await q.pause();
      console.log(`paused ${op.queue}`);
    }
    for (let i = 0; i < (op.jobs || 0); i++) {
      await q.add(op.name || 'job', op.data || {}, op.opts || {});
    }
    if (op.jobs) console.log(`added ${op.jobs} to ${op.queue}`);
  }
  await Promise.all([...queues.values()].map(q => q.close()));
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
