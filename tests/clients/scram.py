"""confluent-kafka with SASL SCRAM-SHA-256 against `evlog serve --users`: the right password
produces and consumes; a wrong one is refused at authentication (librdkafka reports it through
its error callback) and nothing it sent arrives. Prints 'ok' at the end."""
import sys, time
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

bootstrap, user, password, topic = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def conf(pw, errors):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": pw,
            "error_cb": lambda e: errors.append(e)}

errors = []
p = Producer(dict(conf(password, errors), **{"acks": "all", "enable.idempotence": True}))
for i in range(5):
    p.produce(topic, value=b"v%d" % i)
assert p.flush(30) == 0, "records left unacknowledged: %s" % errors[:3]

c = Consumer(dict(conf(password, errors), **{"group.id": "scram", "enable.auto.commit": False}))
c.assign([TopicPartition(topic, 0, 0)])
got, deadline = [], time.time() + 30
while len(got) < 5 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        got.append(m.value())
c.close()
assert got == [b"v%d" % i for i in range(5)], got

refused = []
bad = Producer(dict(conf(password + "x", refused), **{"acks": "all", "message.timeout.ms": 3000}))
bad.produce(topic, value=b"intruder")
bad.flush(5)
assert any(e.code() == KafkaError._AUTHENTICATION for e in refused), refused[:3]
print("ok")
