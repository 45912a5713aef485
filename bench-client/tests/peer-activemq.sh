#!/usr/bin/env bash
# Runs ferromq-bench's broker tests (tests/peer_broker.rs, cargo feature
# `peer-tests`) against a real ActiveMQ Classic (Debian package `activemq`).
#
# Installs the package if needed (apt-get; root), starts a private broker on
# loopback with a fresh data directory, runs the tests, and stops the broker it
# started (by PID) whatever the outcome. Uses the team's reference config from
# ../shared/peers when present (ports and paths rewritten), else writes its own.
#
# Environment:
#   PEERS_DIR            reference config dir (default: <repo>/../shared/peers)
#   BENCH_AMQ_PORT       STOMP port (default 61813; OpenWire uses port + 3)
#   BENCH_AMQ_HEAP       JVM heap (default 1G)
#   CARGO_TEST_ARGS      extra arguments for cargo test (e.g. --release)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
peers="${PEERS_DIR:-$repo/../shared/peers}"
port="${BENCH_AMQ_PORT:-61813}"
openwire_port=$((port + 3))
heap="${BENCH_AMQ_HEAP:-1G}"
base="$(mktemp -d /tmp/ferromq-bench-activemq.XXXXXX)"

if ! dpkg -s activemq >/dev/null 2>&1; then
  echo "installing activemq (Debian package)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends activemq
fi
if [[ ! -f /usr/share/activemq/bin/activemq.jar ]]; then
  echo "activemq.jar not found under /usr/share/activemq; is the activemq package complete?" >&2
  exit 1
fi

mkdir -p "$base/conf" "$base/data" "$base/tmp"
if [[ -f "$peers/activemq.xml" && -f "$peers/log4j.properties" ]]; then
  echo "using the reference config from $peers"
  sed -e "s#/tmp/peer-activemq#$base#g" -e "s#127.0.0.1:61713#127.0.0.1:$port#" \
      -e "s#127.0.0.1:61716#127.0.0.1:$openwire_port#" "$peers/activemq.xml" >"$base/conf/activemq.xml"
  sed -e "s#/tmp/peer-activemq#$base#g" "$peers/log4j.properties" >"$base/conf/log4j.properties"
else
  echo "no reference config at $peers; writing a minimal one"
  cat >"$base/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
       http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- Test broker for ferromq-bench: loopback only, no JMX, KahaDB in a temp dir. -->
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="ferromq-bench-test"
          useJmx="false" dataDirectory="$base/data">
    <persistenceAdapter><kahaDB directory="$base/data/kahadb"/></persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
      <storeUsage><storeUsage limit="4 gb"/></storeUsage>
      <tempUsage><tempUsage limit="2 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:$port?transport.tcpNoDelay=true&amp;wireFormat.maxFrameSize=104857600"/>
    </transportConnectors>
  </broker>
</beans>
EOF
  cat >"$base/conf/log4j.properties" <<EOF
log4j.rootLogger=WARN, logfile
log4j.appender.logfile=org.apache.log4j.FileAppender
log4j.appender.logfile.file=$base/data/activemq.log
log4j.appender.logfile.layout=org.apache.log4j.PatternLayout
log4j.appender.logfile.layout.ConversionPattern=%d %-5p %m (%c)%n
EOF
fi

# JVM flags as Debian's /usr/bin/activemq passes them on Java 9+ (module opens).
java -Xms"$heap" -Xmx"$heap" \
  --add-reads=java.xml=java.logging \
  --add-opens java.base/java.security=ALL-UNNAMED --add-opens java.base/java.net=ALL-UNNAMED \
  --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED \
  --add-opens java.naming/javax.naming.spi=ALL-UNNAMED --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED \
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
  --add-exports=java.base/sun.net.www.protocol.http=ALL-UNNAMED --add-exports=java.base/sun.net.www.protocol.https=ALL-UNNAMED \
  --add-exports=java.base/sun.net.www.protocol.jar=ALL-UNNAMED --add-exports=jdk.xml.dom/org.w3c.dom.html=ALL-UNNAMED \
  --add-exports=jdk.naming.rmi/com.sun.jndi.url.rmi=ALL-UNNAMED \
  -Djava.io.tmpdir="$base/tmp" \
  -Dlog4j.configuration="file:$base/conf/log4j.properties" \
  -Dactivemq.classpath="$base/conf" -Dactivemq.home=/usr/share/activemq \
  -Dactivemq.base="$base" -Dactivemq.conf="$base/conf" -Dactivemq.data="$base/data" \
  -jar /usr/share/activemq/bin/activemq.jar start "xbean:file:$base/conf/activemq.xml" \
  >"$base/console.log" 2>&1 </dev/null &
pid=$!

stop_broker() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$base"
}
trap stop_broker EXIT

ready=0
for _ in $(seq 1 180); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.5
done
if [[ $ready != 1 ]]; then
  echo "ActiveMQ did not open 127.0.0.1:$port; console log:" >&2
  tail -40 "$base/console.log" >&2 || true
  exit 1
fi
echo "ActiveMQ (pid $pid) listening on 127.0.0.1:$port"

cd "$repo"
# shellcheck disable=SC2086 # CARGO_TEST_ARGS is a list of words on purpose
FERROMQ_BENCH_PEER_URL="stomp://127.0.0.1:$port" \
  cargo test -p ferromq-bench --features peer-tests --test peer_broker ${CARGO_TEST_ARGS:-} -- --test-threads=2
