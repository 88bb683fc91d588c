#include "node/ingest/fetch_waker.h"

#include <memory>
#include <vector>

namespace kiq::node {

void FetchWaker::Wake(RdKafka::KafkaConsumer& consumer, const std::string& topic,
                      int32_t partition) {
  std::unique_ptr<RdKafka::TopicPartition> tp(
      RdKafka::TopicPartition::create(topic, partition, RdKafka::Topic::OFFSET_END));
  std::vector<RdKafka::TopicPartition*> tps{tp.get()};
  // ERR__TIMED_OUT is the expected answer: the request is sent, its reply is not awaited.
  (void)consumer.offsetsForTimes(tps, 0);
}

}  // namespace kiq::node
