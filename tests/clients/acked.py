"""confluent-kafka producer with acks=all against `evlog serve`, until it fails: prints one line
per acknowledged record, 'offset value', flushed at once (the test kills the server midway and
checks that every printed record survived)."""
import sys
from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "message.timeout.ms": 5000,
              "retries": 0})

def acked(err, m):
    if err is None:
        sys.stdout.write("%d %s\n" % (m.offset(), m.value().decode()))
        sys.stdout.flush()

i = 0
while True:
    try:
        p.produce(topic, value=b"v%d" % i, on_delivery=acked)
        i += 1
    except BufferError:
        pass
    p.poll(0.001)
