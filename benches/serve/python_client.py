"""The Python side of `benches/serve.rs`: confluent-kafka (librdkafka) with the issue's settings.

python_client.py produce BOOTSTRAP TOPIC N   -> prints 'records_per_s'
python_client.py consume BOOTSTRAP TOPIC N   -> prints 'records_per_s'

produce: the topic created (one partition) if missing, then an idempotent producer, acks=all, linger.ms=5, N records of 100 B; timed from the first
send to the last acknowledgement. consume: partition 0 assigned from offset 0, N records polled
(in batches of up to 10,000), timed from the first poll to the N-th record."""
import sys, time
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

mode, bootstrap, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
value = b"x" * 100

if mode == "produce":
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "queue.buffering.max.messages": 1000000,
                  "message.timeout.ms": 300000})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench"})
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    before = c.get_watermark_offsets(TopicPartition(topic, 0), 30)[1]
    produce = p.produce
    t0 = time.perf_counter()
    for i in range(n):
        try:
            produce(topic, value)
        except BufferError:
            p.poll(0.01)
            produce(topic, value)
    assert p.flush(300) == 0, "records left unacknowledged"
    elapsed = time.perf_counter() - t0
    # No callback per record (it costs the client as much as the send): the topic's end offset
    # says whether every record arrived.
    after = c.get_watermark_offsets(TopicPartition(topic, 0), 30)[1]
    assert after - before == n, "%d records arrived of %d" % (after - before, n)
    c.close()
    print("%.0f" % (n / elapsed))
elif mode == "consume":
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for m in c.consume(10000, 1.0):
            if m.error() is None:
                got += 1
        if time.perf_counter() - t0 > 300:
            raise SystemExit("consumed %d of %d" % (got, n))
    elapsed = time.perf_counter() - t0
    c.close()
    print("%.0f" % (n / elapsed))
else:
    raise SystemExit("mode: produce or consume")
