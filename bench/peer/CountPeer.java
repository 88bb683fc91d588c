// The Kafka Streams peer of bench/run.sh --peer (bench/README.md, "Side by side with Kafka
// Streams"): the same count store as kiq's, written the way Kafka Streams interactive-queries
// users write it (the pattern of Apache Kafka's WordCountInteractiveQueries example), so that
// both answer the same Gets over HTTP from the same topic.
//
//   java -Dsun.net.httpserver.nodelay=true -cp "<kafka>/libs/*:<classes>" CountPeer \
//     <application-id> <bootstrap> <topic> <http-port> <stream-threads> <state-dir>
//
// Topology: topic (String key, any value) -> groupByKey().count() into an in-memory key-value
// store "counts" (the distribution's rocksdbjni is missing, and an in-memory store only
// flatters Kafka Streams: no disk, no serialization into RocksDB). Its changelog topic is the
// state a restart restores from.
//
// HTTP (com.sun.net.httpserver, a fixed pool of handler threads):
//   GET /get/<key>  200 {"key":"<key>","count":<n>}, 404 if absent, 503 while the store is not
//                   queryable (starting, rebalancing, restoring)
//   GET /count      200 {"records":<sum of all counts>,"keys":<n>}: how many records the store
//                   has materialized, for the bench to time ingestion; 503 as above
//   GET /state      200 the KafkaStreams state (CREATED, REBALANCING, RUNNING, ...)
// Writes "http=<port>" to <state-dir>/port once serving (port 0 picks a free one).
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.Stores;

public final class CountPeer {
  private static final String STORE = "counts";

  private final KafkaStreams streams;
  // The store handle; re-fetched after an InvalidStateStoreException (a rebalance closes it).
  private volatile ReadOnlyKeyValueStore<String, Long> store;

  private CountPeer(KafkaStreams streams) {
    this.streams = streams;
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: CountPeer <application-id> <bootstrap> <topic> <http-port> "
          + "<stream-threads> <state-dir>");
      System.exit(2);
    }
    final String appId = args[0], bootstrap = args[1], topic = args[2];
    final int port = parseInt("http-port", args[3], 0, 65535);
    final int threads = parseInt("stream-threads", args[4], 1, 64);
    final Path stateDir = Paths.get(args[5]);
    Files.createDirectories(stateDir);

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.resolve("streams").toString());
    props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.String().getClass());
    props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.String().getClass());
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(topic, Consumed.with(Serdes.String(), Serdes.String()))
        .groupByKey()
        .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore(STORE))
            .withKeySerde(Serdes.String())
            .withValueSerde(Serdes.Long()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountPeer peer = new CountPeer(streams);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler((t, e) -> {
      System.err.println("stream thread " + t.getName() + " died: " + e);
      e.printStackTrace();
    });

    HttpServer http = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 1024);
    // The JDK server's dispatcher hands each exchange to this pool, as an IQ service's web
    // container would; 2 threads per core keeps both cores busy while a handler writes.
    ExecutorService pool =
        Executors.newFixedThreadPool(Math.max(4, 2 * Runtime.getRuntime().availableProcessors()));
    http.setExecutor(pool);
    http.createContext("/get/", peer::handleGet);
    http.createContext("/count", peer::handleCount);
    http.createContext("/state", ex -> reply(ex, 200, "{\"state\":\"" + streams.state() + "\"}"));

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      http.stop(0);
      streams.close();
      pool.shutdownNow();
      stopped.countDown();
    }));
    streams.start();
    http.start();
    Path portFile = stateDir.resolve("port");
    Path tmp = stateDir.resolve("port.tmp");
    Files.write(tmp, ("http=" + http.getAddress().getPort() + "\n").getBytes(StandardCharsets.UTF_8));
    Files.move(tmp, portFile, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    stopped.await();
  }

  private static int parseInt(String what, String s, int min, int max) {
    try {
      int v = Integer.parseInt(s);
      if (v >= min && v <= max) return v;
    } catch (NumberFormatException e) {
      // reported below
    }
    System.err.println("CountPeer: " + what + " must be an integer in [" + min + ", " + max
        + "], got \"" + s + "\"");
    System.exit(2);
    return 0;
  }

  private ReadOnlyKeyValueStore<String, Long> store() {
    ReadOnlyKeyValueStore<String, Long> s = store;
    if (s == null) {
      s = streams.store(STORE, QueryableStoreTypes.<String, Long>keyValueStore());
      store = s;
    }
    return s;
  }

  private void handleGet(HttpExchange ex) throws IOException {
    if (!"GET".equals(ex.getRequestMethod())) {
      reply(ex, 405, "{\"error\":\"GET only\"}");
      return;
    }
    final String key =
        URLDecoder.decode(ex.getRequestURI().getRawPath().substring("/get/".length()), "UTF-8");
    Long n;
    try {
      n = store().get(key);
    } catch (InvalidStateStoreException e) {
      store = null;
      reply(ex, 503, "{\"error\":\"store not queryable: " + jsonEscape(e.getMessage()) + "\"}");
      return;
    }
    if (n == null) {
      reply(ex, 404, "{\"error\":\"no such key\"}");
    } else {
      reply(ex, 200, "{\"key\":\"" + jsonEscape(key) + "\",\"count\":" + n + "}");
    }
  }

  private void handleCount(HttpExchange ex) throws IOException {
    long records = 0, keys = 0;
    try (KeyValueIterator<String, Long> it = store().all()) {
      while (it.hasNext()) {
        KeyValue<String, Long> kv = it.next();
        records += kv.value;
        ++keys;
      }
    } catch (InvalidStateStoreException e) {
      store = null;
      reply(ex, 503, "{\"error\":\"store not queryable: " + jsonEscape(e.getMessage()) + "\"}");
      return;
    }
    reply(ex, 200, "{\"records\":" + records + ",\"keys\":" + keys + "}");
  }

  private static void reply(HttpExchange ex, int status, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, b.length);
    try (OutputStream os = ex.getResponseBody()) {
      os.write(b);
    }
  }

  private static String jsonEscape(String s) {
    if (s == null) return "";
    StringBuilder b = new StringBuilder(s.length());
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') {
        b.append('\\').append(c);
      } else if (c < 0x20) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    return b.toString();
  }
}
