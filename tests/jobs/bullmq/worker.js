// A real BullMQ Worker per queue, in one process, until SIGTERM (then a graceful close).
//
//   node worker.js '{"port": 6379, "prefix": "bull", "queues": {
//       "emails": {"metrics": true, "removeOnComplete": {"count": 3}, "name": "mailer"},
//       "thumbs": {}}}'
//
// Per queue: `metrics` turns on BullMQ's metrics (the `metrics:completed`/`metrics:failed`
// counts), `removeOnComplete`/`removeOnFail` are passed through, `name` names the worker
// connection (`<prefix>:<base64 queue>:w:<name>`). A job with data `{"fail": true}` throws; one
// with `{"ms": N}` takes N ms. Prints `ready` once every worker is connected.
const { Worker } = require('bullmq');

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const connection = { host: '127.0.0.1', port: spec.port };
  const workers = Object.entries(spec.queues).map(([queue, o]) => {
    const opts = { connection, prefix: spec.prefix || 'bull', concurrency: o.concurrency || 1 };
    if (o.metrics) opts.metrics = { maxDataPoints: 60 };
    if (o.name) opts.name = o.name;
    if (o.removeOnComplete !== undefined) opts.removeOnComplete = o.removeOnComplete;
    if (o.removeOnFail !== undefined) opts.removeOnFail = o.removeOnFail;
    const worker = new Worker(
      queue,
      async job => {
        if (job.data.fail) throw new Error('job asked to fail');
        await new Promise(resolve => setTimeout(resolve, job.data.ms || 0));
        return 'done';
      },
      opts,
    );
    worker.on('error', err => console.error(`worker ${queue}: ${err}`));
    return worker;
  });
  await Promise.all(workers.map(w => w.waitUntilReady()));
  console.log('ready');

  let closing = false;
  process.on('SIGTERM', async () => {
    if (closing) return;
    closing = true;
    await Promise.all(workers.map(w => w.close()));
    process.exit(0);
  });
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
