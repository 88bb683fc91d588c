#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "librdkafka/rdkafka.h"

// The one place where librdkafka error codes are interpreted: what the ingestion loop does
// about each one, and how each becomes an absl::Status. Keeping the decision in one pure
// function means a code cannot be retried in one caller and fatal in another, and each class
// is unit-tested once.
//
// Pure functions; thread-safe.
namespace kiq {

// What the ingestion loop does about a Kafka error.
enum class KafkaErrorAction {
  // Transient (network, leadership, coordinator, timeouts, throttling): back off and retry the
  // same operation; librdkafka refreshes metadata and reconnects meanwhile.
  kRetry,
  // The position we asked for no longer exists on the broker (retention deleted it, or it is
  // past the log end): re-resolve the offset by policy before consuming again.
  kResetOffset,
  // Retrying cannot help (configuration, authorization, protocol, data, kiq bug): stop the
  // partition/loop and surface the Status.
  kFatal,
};

// One exhaustive decision for every error code; codes not listed, including ones newer than
// this code or not known to librdkafka, are fatal (as Redpanda does): retrying something we do
// not understand risks looping forever on a permanent failure.
// `err` must not be RD_KAFKA_RESP_ERR_NO_ERROR (aborts): success has no action, and a caller
// classifying it has lost track of whether the call failed.
//
// The code is an int, as C hands it over: one a newer broker sent may lie outside
// rd_kafka_resp_err_t's range, where holding it in the enum is undefined behaviour (UBSan's
// "not a valid value for type"). Enumerators convert implicitly.
KafkaErrorAction ClassifyKafkaError(int err);

// "retry", "reset_offset" or "fatal"; suitable as a bounded metric label.
std::string_view KafkaErrorActionName(KafkaErrorAction a);

// Converts a librdkafka error to absl::Status (the one place that does), naming what we were
// doing: KafkaToStatus(err, "consume topic=orders partition=3") gives e.g. UNAVAILABLE
// "consume topic=orders partition=3: Broker: Leader not available
// (RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)". NO_ERROR gives OkStatus().
// The code follows ClassifyKafkaError: kRetry → Unavailable (DeadlineExceeded for timeouts),
// kResetOffset → OutOfRange, kFatal → Unauthenticated / PermissionDenied / InvalidArgument /
// FailedPrecondition / NotFound / DataLoss / Cancelled (handle shutting down) / Internal.
absl::Status KafkaToStatus(int err, std::string_view doing);

}  // namespace kiq
