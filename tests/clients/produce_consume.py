"""confluent-kafka (librdkafka) against `evlog serve`: produce with acks=all in each compression,
consume by assignment, commit; every record comes back byte for byte. Prints 'ok' at the end."""
import sys
from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
sent = []
for compression in ["none", "gzip", "snappy", "lz4", "zstd"]:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": compression})
    errors = []
    for i in range(200):
        key, value = b"k%d" % i, b"%s-%d" % (compression.encode(), i)
        headers = [("h", b"\x00\xff%d" % i), ("trace", b"")]
        p.produce(topic, key=key, value=value, headers=headers, timestamp=1_700_000_000_000 + i,
                  on_delivery=lambda err, m: errors.append(err) if err else None)
        sent.append((key, value, 1_700_000_000_000 + i))
    assert p.flush(30) == 0, "unacknowledged records"
    assert not errors, errors[:3]

c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-assign", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
got = []
while len(got) < len(sent):
    m = c.poll(10)
    assert m is not None, "no record within 10 s after %d" % len(got)
    assert not m.error(), m.error()
    assert m.offset() == len(got), (m.offset(), len(got))
    got.append((m.key(), m.value(), m.timestamp()[1]))
    if len(got) == 1:
        assert m.headers() == [("h", b"\x00\xff0"), ("trace", b"")], m.headers()
assert got == sent, "records differ"
c.commit(offsets=[TopicPartition(topic, 0, len(got))], asynchronous=False)
committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
assert committed == len(sent), committed
c.close()
print("ok")
