#include "common/kafka/kafka_errors.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "librdkafka/rdkafka.h"

namespace kiq {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kDoing[] = "consume topic=orders partition=3";

// An error code as C hands it to us, e.g. one a newer broker sent: an int, possibly outside
// rd_kafka_resp_err_t's range (-256..255 for librdkafka 2.0.2), which no enum may hold.
int FromC(int code) { return code; }

// Checks one group: every code gets the action, and KafkaToStatus carries the matching code.
void ExpectGroup(const std::vector<int>& errs, KafkaErrorAction action, absl::StatusCode code) {
  for (int err : errs) {
    SCOPED_TRACE(absl::StrCat("code ", err));
    EXPECT_EQ(ClassifyKafkaError(err), action);
    EXPECT_EQ(KafkaToStatus(err, kDoing).code(), code);
  }
}

TEST(ClassifyKafkaErrorTest, ConnectivityFailuresAreRetried) {
  ExpectGroup({RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__RESOLVE,
               RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__NODE_UPDATE,
               RD_KAFKA_RESP_ERR__UNKNOWN_BROKER, RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
               RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION},
              KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, LeadershipAndMetadataChangesAreRetried) {
  ExpectGroup({RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
               RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
               RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH, RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH,
               RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE,
               RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_CONTROLLER,
               RD_KAFKA_RESP_ERR_LISTENER_NOT_FOUND, RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
               RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, RD_KAFKA_RESP_ERR__OUTDATED,
               RD_KAFKA_RESP_ERR__WAIT_CACHE},
              KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, InsufficientReplicasAreRetried) {
  ExpectGroup({RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
               RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, RD_KAFKA_RESP_ERR__ISR_INSUFF},
              KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, GroupCoordinationErrorsAreRetried) {
  ExpectGroup({RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
               RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR__WAIT_COORD,
               RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
               RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID, RD_KAFKA_RESP_ERR_MEMBER_ID_REQUIRED,
               RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST, RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED,
               RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT},
              KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, FetchSessionErrorsAreRetried) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND, RD_KAFKA_RESP_ERR_INVALID_FETCH_SESSION_EPOCH},
      KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, BackpressureIsRetried) {
  ExpectGroup({RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED},
              KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, TimeoutsAreRetriedAsDeadlineExceeded) {
  ExpectGroup({RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
               RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT},
              KafkaErrorAction::kRetry, absl::StatusCode::kDeadlineExceeded);
}

TEST(ClassifyKafkaErrorTest, BenignAndLocalTransientConditionsAreRetried) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR__PARTITION_EOF, RD_KAFKA_RESP_ERR__NO_OFFSET, RD_KAFKA_RESP_ERR__NOOP,
       RD_KAFKA_RESP_ERR__RETRY, RD_KAFKA_RESP_ERR__IN_PROGRESS,
       RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS, RD_KAFKA_RESP_ERR__PARTIAL, RD_KAFKA_RESP_ERR__INTR},
      KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable);
}

TEST(ClassifyKafkaErrorTest, OffsetOutOfRangeResetsOffset) {
  ExpectGroup({RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE, RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET},
              KafkaErrorAction::kResetOffset, absl::StatusCode::kOutOfRange);
}

TEST(ClassifyKafkaErrorTest, AuthenticationFailuresAreFatal) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR__AUTHENTICATION, RD_KAFKA_RESP_ERR__SSL,
       RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED, RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM,
       RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE, RD_KAFKA_RESP_ERR_UNACCEPTABLE_CREDENTIAL,
       RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_EXPIRED},
      KafkaErrorAction::kFatal, absl::StatusCode::kUnauthenticated);
}

TEST(ClassifyKafkaErrorTest, AuthorizationFailuresAreFatal) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
       RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
       RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
       RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTHORIZATION_FAILED},
      KafkaErrorAction::kFatal, absl::StatusCode::kPermissionDenied);
}

TEST(ClassifyKafkaErrorTest, InvalidRequestsAndConfigurationAreFatal) {
  ExpectGroup({RD_KAFKA_RESP_ERR__INVALID_ARG,
               RD_KAFKA_RESP_ERR__KEY_SERIALIZATION,
               RD_KAFKA_RESP_ERR__VALUE_SERIALIZATION,
               RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
               RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
               RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
               RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
               RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
               RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS,
               RD_KAFKA_RESP_ERR_INVALID_GROUP_ID,
               RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT,
               RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE,
               RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP,
               RD_KAFKA_RESP_ERR_INVALID_PARTITIONS,
               RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR,
               RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT,
               RD_KAFKA_RESP_ERR_INVALID_CONFIG,
               RD_KAFKA_RESP_ERR_INVALID_REQUEST,
               RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT,
               RD_KAFKA_RESP_ERR_INVALID_PRINCIPAL_TYPE,
               RD_KAFKA_RESP_ERR_INVALID_RECORD,
               RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
               RD_KAFKA_RESP_ERR_INCONSISTENT_GROUP_PROTOCOL},
              KafkaErrorAction::kFatal, absl::StatusCode::kInvalidArgument);
}

TEST(ClassifyKafkaErrorTest, UnsupportedByClusterIsFatal) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION, RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT,
       RD_KAFKA_RESP_ERR_UNSUPPORTED_COMPRESSION_TYPE, RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE,
       RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED, RD_KAFKA_RESP_ERR__UNKNOWN_PROTOCOL,
       RD_KAFKA_RESP_ERR_SECURITY_DISABLED, RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTH_DISABLED,
       RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED, RD_KAFKA_RESP_ERR_GROUP_MAX_SIZE_REACHED},
      KafkaErrorAction::kFatal, absl::StatusCode::kFailedPrecondition);
}

TEST(ClassifyKafkaErrorTest, FencingAndBrokenProducerStateAreFatal) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
       RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED,
       RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
       RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING,
       RD_KAFKA_RESP_ERR_INVALID_TXN_STATE, RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE},
      KafkaErrorAction::kFatal, absl::StatusCode::kFailedPrecondition);
}

// The broker's UNKNOWN_TOPIC_OR_PART is retried (topic still propagating); librdkafka's local
// verdict after a metadata fetch is not.
TEST(ClassifyKafkaErrorTest, MissingTopicPartitionOrGroupIsFatal) {
  ExpectGroup({RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
               RD_KAFKA_RESP_ERR__UNKNOWN_GROUP, RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND,
               RD_KAFKA_RESP_ERR_RESOURCE_NOT_FOUND},
              KafkaErrorAction::kFatal, absl::StatusCode::kNotFound);
}

TEST(ClassifyKafkaErrorTest, CorruptDataIsFatal) {
  ExpectGroup({RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR__BAD_MSG,
               RD_KAFKA_RESP_ERR__BAD_COMPRESSION, RD_KAFKA_RESP_ERR__UNDERFLOW,
               RD_KAFKA_RESP_ERR__KEY_DESERIALIZATION, RD_KAFKA_RESP_ERR__VALUE_DESERIALIZATION},
              KafkaErrorAction::kFatal, absl::StatusCode::kDataLoss);
}

TEST(ClassifyKafkaErrorTest, ShutdownStopsTheLoopAsCancelled) {
  ExpectGroup({RD_KAFKA_RESP_ERR__DESTROY, RD_KAFKA_RESP_ERR__PURGE_QUEUE,
               RD_KAFKA_RESP_ERR__PURGE_INFLIGHT},
              KafkaErrorAction::kFatal, absl::StatusCode::kCancelled);
}

TEST(ClassifyKafkaErrorTest, ApiMisuseIsFatal) {
  ExpectGroup({RD_KAFKA_RESP_ERR__STATE, RD_KAFKA_RESP_ERR__CONFLICT,
               RD_KAFKA_RESP_ERR__EXISTING_SUBSCRIPTION, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS,
               RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, RD_KAFKA_RESP_ERR__NOT_CONFIGURED,
               RD_KAFKA_RESP_ERR__READ_ONLY, RD_KAFKA_RESP_ERR__NOENT,
               RD_KAFKA_RESP_ERR__INVALID_TYPE, RD_KAFKA_RESP_ERR__APPLICATION},
              KafkaErrorAction::kFatal, absl::StatusCode::kInternal);
}

TEST(ClassifyKafkaErrorTest, LocalEnvironmentAndUnexplainedBrokerFailuresAreFatal) {
  ExpectGroup({RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE, RD_KAFKA_RESP_ERR__FS, RD_KAFKA_RESP_ERR__FAIL,
               RD_KAFKA_RESP_ERR__INCONSISTENT, RD_KAFKA_RESP_ERR_UNKNOWN},
              KafkaErrorAction::kFatal, absl::StatusCode::kInternal);
}

// Known codes that no group lists fall through to the default, which must be fatal.
TEST(ClassifyKafkaErrorTest, UnlistedKnownCodesAreFatal) {
  ExpectGroup(
      {RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP,
       RD_KAFKA_RESP_ERR_STALE_CTRL_EPOCH, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
       RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER, RD_KAFKA_RESP_ERR_REASSIGNMENT_IN_PROGRESS,
       RD_KAFKA_RESP_ERR_PRINCIPAL_DESERIALIZATION_FAILURE},
      KafkaErrorAction::kFatal, absl::StatusCode::kInternal);
}

TEST(ClassifyKafkaErrorTest, UnknownCodesAreFatal) {
  ExpectGroup({FromC(12345), FromC(98), FromC(255), FromC(-99), FromC(-2), FromC(-12345),
               RD_KAFKA_RESP_ERR__BEGIN, RD_KAFKA_RESP_ERR__END, RD_KAFKA_RESP_ERR_END_ALL},
              KafkaErrorAction::kFatal, absl::StatusCode::kInternal);
}

// The action and the Status code must tell the same story for every code librdkafka knows,
// so a caller that only sees the Status decides as ClassifyKafkaError would.
TEST(ClassifyKafkaErrorTest, StatusCodeAgreesWithActionForEveryKnownCode) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  int checked = 0;
  for (size_t i = 0; i < count; ++i) {
    if (descs[i].desc == nullptr || descs[i].code == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    SCOPED_TRACE(descs[i].name);
    const absl::StatusCode code = KafkaToStatus(descs[i].code, kDoing).code();
    switch (ClassifyKafkaError(descs[i].code)) {
      case KafkaErrorAction::kRetry:
        EXPECT_TRUE(code == absl::StatusCode::kUnavailable ||
                    code == absl::StatusCode::kDeadlineExceeded);
        break;
      case KafkaErrorAction::kResetOffset:
        EXPECT_EQ(code, absl::StatusCode::kOutOfRange);
        break;
      case KafkaErrorAction::kFatal:
        EXPECT_NE(code, absl::StatusCode::kOk);
        EXPECT_NE(code, absl::StatusCode::kUnavailable);
        EXPECT_NE(code, absl::StatusCode::kDeadlineExceeded);
        EXPECT_NE(code, absl::StatusCode::kOutOfRange);
        break;
    }
    ++checked;
  }
  EXPECT_GT(checked, 150);  // librdkafka 2.0.2 names ~160 codes.
}

TEST(ClassifyKafkaErrorDeathTest, NoErrorHasNoActionAndAborts) {
  EXPECT_DEATH(ClassifyKafkaError(RD_KAFKA_RESP_ERR_NO_ERROR), "called with NO_ERROR");
}

TEST(KafkaErrorActionNameTest, NamesEveryAction) {
  EXPECT_EQ(KafkaErrorActionName(KafkaErrorAction::kRetry), "retry");
  EXPECT_EQ(KafkaErrorActionName(KafkaErrorAction::kResetOffset), "reset_offset");
  EXPECT_EQ(KafkaErrorActionName(KafkaErrorAction::kFatal), "fatal");
  EXPECT_EQ(KafkaErrorActionName(static_cast<KafkaErrorAction>(17)), "invalid");
}

TEST(KafkaToStatusTest, NoErrorIsOk) {
  EXPECT_TRUE(KafkaToStatus(RD_KAFKA_RESP_ERR_NO_ERROR, kDoing).ok());
}

TEST(KafkaToStatusTest, MessageNamesWhatWeWereDoingAndTheError) {
  const absl::Status status = KafkaToStatus(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, kDoing);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(),
            "consume topic=orders partition=3: Broker: Leader not available "
            "(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)");
}

TEST(KafkaToStatusTest, LocalErrorsKeepTheirDoubleUnderscoreName) {
  const absl::Status status = KafkaToStatus(RD_KAFKA_RESP_ERR__TRANSPORT, "commit group=kiq");
  EXPECT_THAT(std::string(status.message()), StartsWith("commit group=kiq: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("(RD_KAFKA_RESP_ERR__TRANSPORT)"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(rd_kafka_err2str(RD_KAFKA_RESP_ERR__TRANSPORT)));
}

TEST(KafkaToStatusTest, EveryKnownCodeNamesItselfAndTheOperation) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  for (size_t i = 0; i < count; ++i) {
    // Entries without a description are gaps or the _BEGIN/_END sentinels, not errors.
    if (descs[i].desc == nullptr || descs[i].code == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    const absl::Status status = KafkaToStatus(descs[i].code, kDoing);
    EXPECT_THAT(std::string(status.message()), StartsWith(absl::StrCat(kDoing, ": ")));
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(absl::StrCat(descs[i].desc, " (RD_KAFKA_RESP_ERR_", descs[i].name, ")")));
  }
}

TEST(KafkaToStatusTest, UnknownCodeIsInternalAndNamesTheNumber) {
  const absl::Status status = KafkaToStatus(FromC(12345), kDoing);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(),
            "consume topic=orders partition=3: unknown librdkafka error code 12345");
}

TEST(KafkaToStatusTest, EmptyDoingLeavesNoDanglingSeparator) {
  const absl::Status status = KafkaToStatus(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, "");
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(status.message()), StartsWith("Broker: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)"));
}

}  // namespace
}  // namespace kiq
