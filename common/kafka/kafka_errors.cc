#include "common/kafka/kafka_errors.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace kiq {
namespace {

// The whole decision for one code: the action, and the absl code that carries it to callers
// that only see a Status. Both public functions read this, so they cannot disagree.
struct Decision {
  KafkaErrorAction action;
  absl::StatusCode code;
};

constexpr Decision Retry() { return {KafkaErrorAction::kRetry, absl::StatusCode::kUnavailable}; }
constexpr Decision RetryAfterTimeout() {
  return {KafkaErrorAction::kRetry, absl::StatusCode::kDeadlineExceeded};
}
constexpr Decision ResetOffset() {
  return {KafkaErrorAction::kResetOffset, absl::StatusCode::kOutOfRange};
}
constexpr Decision Fatal(absl::StatusCode code) { return {KafkaErrorAction::kFatal, code}; }

Decision Decide(int err) {
  switch (err) {
    // --- Retry -------------------------------------------------------------------------------

    // Connectivity: a broker restarting, a DNS blip or a partitioned network heals on its own,
    // and librdkafka reconnects in the background; giving up would turn a rolling restart of
    // the cluster into an outage of kiq.
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
      return Retry();

    // Leadership and metadata in flux (leader election, reassignment, a topic that is still
    // being created, a log dir going offline so the partition moves): the metadata refresh
    // librdkafka triggers on these points us at the new leader. Java marks all of these
    // retriable (InvalidMetadataException and friends, KIP-320 leader epochs).
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_LISTENER_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR__OUTDATED:
    case RD_KAFKA_RESP_ERR__WAIT_CACHE:
      return Retry();

    // Fewer in-sync replicas than min.insync.replicas: the write is refused (or was appended
    // but not acknowledged) until a follower catches up, which is a matter of time.
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR__ISR_INSUFF:
      return Retry();

    // Group coordination: the coordinator moving or loading, a rebalance in progress, or our
    // membership/generation gone stale (after which librdkafka rejoins on the next poll). The
    // records whose commit failed are redelivered, which the at-least-once pipeline absorbs.
    // UNSTABLE_OFFSET_COMMIT (KIP-447) clears once the pending transaction completes.
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_MEMBER_ID_REQUIRED:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
    case RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED:
    case RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT:
      return Retry();

    // Incremental fetch sessions (KIP-227) evicted or out of step on the broker: the client
    // simply opens a new full session on the next fetch.
    case RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_INVALID_FETCH_SESSION_EPOCH:
      return Retry();

    // Backpressure: our local queue or the broker's quota is full; waiting is the remedy.
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      return Retry();

    // Timeouts: the broker or the path to it was slow, not wrong. DeadlineExceeded rather than
    // Unavailable so callers and metrics can tell slowness from unreachability.
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return RetryAfterTimeout();

    // Not failures at all, or local operations that ask to be repeated: reaching the end of a
    // partition (more records may arrive), committing before anything was consumed, an
    // interrupted or still-running call. The loop just carries on.
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
    case RD_KAFKA_RESP_ERR__NOOP:
    case RD_KAFKA_RESP_ERR__RETRY:
    case RD_KAFKA_RESP_ERR__IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__PARTIAL:
    case RD_KAFKA_RESP_ERR__INTR:
      return Retry();

    // --- Reset offset ------------------------------------------------------------------------

    // The offset we fetch from is outside the log (deleted by retention, or beyond the end
    // after an unclean leader election), or librdkafka had no policy to reset it with
    // (auto.offset.reset=error). Retrying the same offset fails forever; the loop must pick a
    // new start offset by its own policy, and must say so, since records may be skipped.
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      return ResetOffset();

    // --- Fatal -------------------------------------------------------------------------------

    // Authentication: wrong credentials, mechanism or certificates only change when an
    // operator changes them; retrying would also hammer the broker with failed logins.
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_UNACCEPTABLE_CREDENTIAL:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_EXPIRED:
      return Fatal(absl::StatusCode::kUnauthenticated);

    // Authorization: ACLs are changed by operators, not by time.
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTHORIZATION_FAILED:
      return Fatal(absl::StatusCode::kPermissionDenied);

    // The request or our configuration is invalid (sizes, timeouts, names, acks, policies):
    // the same request would be refused again.
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__KEY_SERIALIZATION:
    case RD_KAFKA_RESP_ERR__VALUE_SERIALIZATION:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_INVALID_GROUP_ID:
    case RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT:
    case RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
    case RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT:
    case RD_KAFKA_RESP_ERR_INVALID_PRINCIPAL_TYPE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INCONSISTENT_GROUP_PROTOCOL:
      return Fatal(absl::StatusCode::kInvalidArgument);

    // The cluster lacks what we need (API version, message format, compression codec, a
    // feature switched off), or the group is full: fixed by upgrading or reconfiguring the
    // cluster or kiq, never by waiting.
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_COMPRESSION_TYPE:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PROTOCOL:
    case RD_KAFKA_RESP_ERR_SECURITY_DISABLED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTH_DISABLED:
    case RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED:
    case RD_KAFKA_RESP_ERR_GROUP_MAX_SIZE_REACHED:
      return Fatal(absl::StatusCode::kFailedPrecondition);

    // Another instance took over (fenced producer, or a consumer with the same
    // group.instance.id), or the idempotent/transactional producer state is broken, or
    // librdkafka raised a fatal error: this handle must not be used again. Continuing would
    // risk two writers, or ordering/exactly-once guarantees silently lost.
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
    case RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING:
    case RD_KAFKA_RESP_ERR_INVALID_TXN_STATE:
    case RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE:
      return Fatal(absl::StatusCode::kFailedPrecondition);

    // The topic, partition or group does not exist as far as librdkafka can tell after
    // fetching metadata (unlike the broker's UNKNOWN_TOPIC_OR_PART above, which is retried
    // while a new topic propagates): almost always a misconfigured name.
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_GROUP:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_RESOURCE_NOT_FOUND:
      return Fatal(absl::StatusCode::kNotFound);

    // Corrupt or undecodable records (CRC mismatch, bad compression, truncated data): a
    // refetch returns the same bytes, so retrying would spin on the offset forever. Skipping
    // would drop data silently; an operator has to decide.
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__BAD_COMPRESSION:
    case RD_KAFKA_RESP_ERR__UNDERFLOW:
    case RD_KAFKA_RESP_ERR__KEY_DESERIALIZATION:
    case RD_KAFKA_RESP_ERR__VALUE_DESERIALIZATION:
      return Fatal(absl::StatusCode::kDataLoss);

    // The handle is being destroyed or its queues purged: we are shutting down, so the loop
    // stops, but this is not a failure worth alarming on, hence Cancelled.
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      return Fatal(absl::StatusCode::kCancelled);

    // kiq used the librdkafka API wrongly (wrong state, conflicting subscription, rebalance
    // events surfacing as errors, a missing configuration); a bug that no retry fixes.
    case RD_KAFKA_RESP_ERR__STATE:
    case RD_KAFKA_RESP_ERR__CONFLICT:
    case RD_KAFKA_RESP_ERR__EXISTING_SUBSCRIPTION:
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
    case RD_KAFKA_RESP_ERR__NOT_CONFIGURED:
    case RD_KAFKA_RESP_ERR__READ_ONLY:
    case RD_KAFKA_RESP_ERR__NOENT:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR__APPLICATION:
      return Fatal(absl::StatusCode::kInternal);

    // The local machine or librdkafka itself is broken (no threads, filesystem errors, an
    // inconsistent internal state) or the broker failed in a way it does not explain
    // (UNKNOWN_SERVER_ERROR, non-retriable in Java too).
    case RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE:
    case RD_KAFKA_RESP_ERR__FS:
    case RD_KAFKA_RESP_ERR__FAIL:
    case RD_KAFKA_RESP_ERR__INCONSISTENT:
    case RD_KAFKA_RESP_ERR_UNKNOWN:
      return Fatal(absl::StatusCode::kInternal);

    // Everything else: admin-only codes (TOPIC_ALREADY_EXISTS, NON_EMPTY_GROUP, ...),
    // inter-broker ones, transactional codes we do not use, codes added after librdkafka
    // 2.0.2, and values that are no code at all. Unknown means fatal: retrying a permanent
    // failure we do not understand would stall the partition silently.
    default:
      return Fatal(absl::StatusCode::kInternal);
  }
}

// Whether librdkafka knows `err` as a real error; for other codes, including its sentinels
// _BEGIN and _END (named in the table but without a description), rd_kafka_err2name returns
// a placeholder like "ERR_12345?" that would be misleading behind an RD_KAFKA_RESP_ERR_ prefix.
bool IsKnownToLibrdkafka(int err) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  for (size_t i = 0; i < count; ++i) {
    if (descs[i].code == err) return descs[i].name != nullptr && descs[i].desc != nullptr;
  }
  return false;
}

}  // namespace

KafkaErrorAction ClassifyKafkaError(int err) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr,
                 "kiq::ClassifyKafkaError: called with NO_ERROR; only failures have an "
                 "action, so the caller has lost track of whether its call failed\n");
    std::abort();
  }
  return Decide(err).action;
}

std::string_view KafkaErrorActionName(KafkaErrorAction a) {
  switch (a) {
    case KafkaErrorAction::kRetry:
      return "retry";
    case KafkaErrorAction::kResetOffset:
      return "reset_offset";
    case KafkaErrorAction::kFatal:
      return "fatal";
  }
  // Only reachable with a value cast into the enum from outside its range.
  return "invalid";
}

absl::Status KafkaToStatus(int err, std::string_view doing) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  const std::string detail =
      IsKnownToLibrdkafka(err)
          // A code librdkafka knows is one of its enumerators: the cast is in range.
          ? absl::StrCat(rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err)),
                         " (RD_KAFKA_RESP_ERR_",
                         rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), ")")
          : absl::StrCat("unknown librdkafka error code ", err);
  // Debian's abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW
  // is 0), which StrCat needs; std::string_view does not convert implicitly.
  return absl::Status(
      Decide(err).code,
      doing.empty() ? detail
                    : absl::StrCat(absl::string_view(doing.data(), doing.size()), ": ", detail));
}

}  // namespace kiq
