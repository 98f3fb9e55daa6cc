// kafkajs (a separate implementation of the protocol, in JavaScript) against `evlog serve`:
// create a topic, produce with acks=all, consume as a group, commit. Prints 'ok' at the end.
const { Kafka, logLevel } = require('kafkajs');
const [bootstrap, topic] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'evlog-test', brokers: [bootstrap], logLevel: logLevel.NOTHING });

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] });
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const n = 100;
  for (let i = 0; i < n; i += 10) {
    const messages = [];
    for (let j = i; j < i + 10; j++) messages.push({ key: `k${j}`, value: `v${j}`, headers: { h: `x${j}` } });
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `js-${topic}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} records in 30 s`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push([message.offset, message.key.toString(), message.value.toString(), message.headers.h.toString()]);
        if (got.length === n) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await consumer.disconnect();
  for (let i = 0; i < n; i++) {
    const want = [String(i), `k${i}`, `v${i}`, `x${i}`];
    if (JSON.stringify(got[i]) !== JSON.stringify(want)) throw new Error(`record ${i}: ${got[i]} != ${want}`);
  }
  console.log('ok');
}
main().catch((e) => { console.error(e); process.exit(1); });
